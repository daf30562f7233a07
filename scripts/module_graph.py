#!/usr/bin/env python3
"""The crate's module graph: which top-level module of src/ names which other (`crate::X`
paths outside comments and test modules), checked against the layers below.

    python3 scripts/module_graph.py      # exits 1 on a back-edge, a cycle or an unplaced module

Inside a directory module, sibling files (`super::x`) must not form a cycle either.

The tutorial's stages depend one way, data → batcher → model → training → inspection → serve,
with the support modules at the level of the earliest stage that needs them. A module may name
only modules of a lower layer; modules of one layer may not name each other. docs/design.md
shows the output.
"""
import collections
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
TEST_FILES = {SRC / "kernels" / "tests.rs"}  # included only under #[cfg(test)]

# The allowed edges, written once: lowest layer first.
LAYERS = [
    ["fsutil", "table"],  # support: atomic writes, text tables
    ["backend"],  # the one place a Burn backend is named
    ["kernels"],  # the fused CPU kernels, a backend extension
    ["data"],  # stage: IDX files, sources, the Burn Dataset
    ["augment"],  # support: random distortions of the training images
    ["callbacks"],  # support: Keras's callbacks as settings and pure decisions over a history
    ["batcher"],  # stage: flatten, /255, one-hot
    ["model", "optim"],  # stage: the Module, its Config and its optimizer
    ["config"],  # support: every stage's settings
    ["run_dir"],  # support: the run directory, training's contract with inspection
    ["saved", "plots"],  # support: loading weights; the pictures
    ["training"],  # stage: the Learner
    ["inspection", "sweep"],  # stage: runs, eval, predict, export; many runs of one spec
    ["serve"],  # the web page, on top of inspection
    ["fault"],  # which error gets which exit code: reads every stage's errors
]
RANK = {module: rank for rank, layer in enumerate(LAYERS) for module in layer}


def graph_of(src):
    graph = collections.defaultdict(set)
    for path in src.rglob("*.rs"):
        if path in TEST_FILES:
            continue
        top = path.relative_to(src).parts[0].removesuffix(".rs")
        if top in ("lib", "main"):
            continue
        graph.setdefault(top, set())
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests \{", path.read_text())[0]
        text = "\n".join(line.split("//")[0] for line in text.splitlines())
        for name in re.findall(r"crate::(\w+)", text):
            if name != top:
                graph[top].add(name)
    return graph


def faults(graph):
    """Every edge that breaks the layering, and every module LAYERS does not place."""
    found = [f"{m}: not in LAYERS (place it in scripts/module_graph.py)"
             for m in sorted(set(graph) - set(RANK))]
    for module in sorted(graph):
        for name in sorted(graph[module]):
            if module in RANK and name in RANK and RANK[name] >= RANK[module]:
                kind = "same layer" if RANK[name] == RANK[module] else "back-edge"
                found.append(f"{module} -> {name}: {kind} ({name} is not below {module})")
    return found


def sibling_cycles(src):
    """Cycles among the files of one directory module (`super::X` between siblings), e.g.
    training/dashboard.rs and training/keras_bar.rs naming each other."""
    found = []
    for directory in sorted(d for d in src.iterdir() if d.is_dir()):
        files = {f.stem: f for f in directory.glob("*.rs") if f.stem != "mod" and f not in TEST_FILES}
        edges = {}
        for name, path in files.items():
            text = re.split(r"#\[cfg\(test\)\]\s*mod tests \{", path.read_text())[0]
            text = "\n".join(line.split("//")[0] for line in text.splitlines())
            used = set(re.findall(r"super::(\w+)", text))
            used |= {n for group in re.findall(r"super::\{([^}]*)\}", text)
                     for n in re.findall(r"\w+", group)}
            edges[name] = {n for n in used if n in files and n != name}
        for name in sorted(edges):
            seen, stack = set(), [name]
            while stack:
                for nxt in edges.get(stack.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            if name in seen:
                found.append(f"{directory.name}/{name}.rs: in a cycle of sibling files")
    return found


def main():
    graph = graph_of(SRC)
    for module in sorted(graph):
        print(f"{module} -> {', '.join(sorted(graph[module])) or '(nothing)'}")
    # Edges only ever go down a layer, so no cycle can form; a fault is both.
    found = faults(graph) + sibling_cycles(SRC)
    print("layering:", "kept" if not found else "BROKEN")
    for fault in found:
        print("  " + fault)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
