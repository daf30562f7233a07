"""Scores `predict` on the pen corpus (examples/pen_corpus.rs): overall, by class and by the
condition each file's name records, counting the pictures `predict` refused.

    python3 scripts/pen_corpus_score.py TABLE ERRORS PICTURES_DIR

TABLE is predict's stdout, ERRORS its stderr (one `error: PATH: reason` line per refused
picture), PICTURES_DIR the part scored (its <digit>/ folders). Standard library only.
"""
import collections
import pathlib
import re
import sys

FIELDS = ["size", "pen", "paper", "ink", "light", "marks"]


def conditions(path):
    name = pathlib.Path(path).stem
    parts = name.split("-")
    return dict(zip(FIELDS, parts[:6]))


def main(table, errors, pictures):
    files = sorted(str(p) for p in pathlib.Path(pictures).glob("*/*") if p.is_file())
    read = {}
    for line in open(table):
        fields = line.split()
        if len(fields) == 12 and fields[1].isdigit():
            read[fields[0]] = int(fields[1])
    refused = {}
    for line in open(errors):
        m = re.match(r"error: (\S+): (.*)", line.strip())
        if m and m.group(1) in set(files):
            refused[m.group(1)] = m.group(2)
    by = collections.defaultdict(lambda: [0, 0, 0])  # right, total, refused
    for f in files:
        label = int(pathlib.Path(f).parent.name)
        keys = [("all", "all"), ("class", str(label))]
        keys += list(conditions(f).items())
        for key in keys:
            by[key][1] += 1
            if f in refused:
                by[key][2] += 1
            elif read.get(f) == label:
                by[key][0] += 1
    print(f"{'condition':<16} {'n':>5} {'accuracy':>9} {'refused':>8}")
    for key in sorted(by, key=lambda k: (["all", "class"] + FIELDS).index(k[0])):
        right, total, ref = by[key]
        print(f"{key[0] + '=' + key[1]:<16} {total:>5} {right / total:9.4f} {ref:>8}")
    for f, why in sorted(refused.items())[:10]:
        print(f"refused {f}: {why}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
