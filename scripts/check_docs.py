#!/usr/bin/env python3
"""What a program can check of the Markdown docs, so that they stay true by construction:

- every relative link resolves: the file exists and, for `file.md#anchor`, the heading does;
- no prose quotes a test count ("143 tests"): the count changes with every test added
  (BENCHMARKS.md's dated records excepted);
- docs/design.md's module graph is exactly what scripts/module_graph.py prints.

    python3 scripts/check_docs.py        # exits 1 and names each fault

The flags and config keys are checked against the program itself by tests/docs.rs.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SKIP_DIRS = {"target", "node_modules", ".venv-bench", "fuzz", "artifacts", ".git"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
TEST_COUNT = re.compile(r"\b\d[\d,]*\s+(?:unit |integration )?tests\b")


def markdown_files():
    for path in sorted(ROOT.rglob("*.md")):
        if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            yield path


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    found, counts, fenced = set(), {}, False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        n = counts.get(base, 0)
        counts[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def prose(path):
    """The file's lines outside fenced code blocks, numbered."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def link_faults(path):
    faults = []
    for number, line in prose(path):
        for match in LINK.finditer(line):
            target = match.group(1) or match.group(2)
            if re.match(r"^[a-z]+:", target) or target.startswith("//"):
                continue  # a URL: not ours to check offline
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{number}"
            if not dest.exists():
                faults.append(f"{where}: link to {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                faults.append(f"{where}: link to {target}: no such heading in {dest.name}")
    return faults


def count_faults(path):
    if path.name == "BENCHMARKS.md":
        return []  # dated records, each with its commit: a count there stays true of its day
    return [f"{path.relative_to(ROOT)}:{number}: a test count in prose ({m.group(0)!r}); "
            "counts age with every test added: leave it out"
            for number, line in prose(path) for m in TEST_COUNT.finditer(line)]


def graph_faults():
    """The fenced block after design.md's 'it printed:' line must be the script's output."""
    design = ROOT / "docs" / "design.md"
    printed = subprocess.run([sys.executable, str(ROOT / "scripts" / "module_graph.py")],
                             capture_output=True, text=True).stdout
    block = re.search(r"```text\n(.*?layering: \w+\n)```", design.read_text(), re.S)
    if not block:
        return ["docs/design.md: no module graph block (```text … layering: …```)"]
    if block.group(1) != printed:
        return ["docs/design.md: the module graph differs from scripts/module_graph.py's "
                "output; paste the output in:\n" + printed]
    return []


def main():
    faults = graph_faults()
    for path in markdown_files():
        faults += link_faults(path) + count_faults(path)
    for fault in faults:
        print(fault)
    print("docs:", "true to the tree" if not faults else f"{len(faults)} fault(s)")
    return 1 if faults else 0


if __name__ == "__main__":
    sys.exit(main())
