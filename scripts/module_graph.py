#!/usr/bin/env python3
"""The crate's module graph: which top-level module of src/ names which other (`crate::X`
paths outside comments and test modules), and whether any of them forms a cycle.

    python3 scripts/module_graph.py      # exits 1 when there is a cycle

docs/design.md shows its output and the stage order it must keep.
"""
import collections
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
TEST_FILES = {SRC / "kernels" / "tests.rs"}  # included only under #[cfg(test)]

graph = collections.defaultdict(set)
for path in SRC.rglob("*.rs"):
    if path in TEST_FILES:
        continue
    top = path.relative_to(SRC).parts[0].removesuffix(".rs")
    if top in ("lib", "main"):
        continue
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests \{", path.read_text())[0]
    text = "\n".join(line.split("//")[0] for line in text.splitlines())
    for name in re.findall(r"crate::(\w+)", text):
        if name != top:
            graph[top].add(name)


def reachable(start):
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


for module in sorted(graph):
    print(f"{module} -> {', '.join(sorted(graph[module]))}")
cycles = [m for m in sorted(graph) if m in reachable(m)]
print("cycles:", ", ".join(cycles) if cycles else "none")
sys.exit(1 if cycles else 0)
