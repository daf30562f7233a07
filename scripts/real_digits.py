#!/usr/bin/env python3
"""Real handwritten digits that are not MNIST, as pictures a person would scan, and the score
of `mnist-mlp predict` on them. Run by scripts/real-digits.sh (numpy and Pillow, in a venv).

    real_digits.py render DIGITS_CSV_GZ OUT_DIR   # writes OUT_DIR/{dev,heldout}/<label>/<row>.png
    real_digits.py score PREDICT_TABLE            # accuracy and per-class accuracy

The set: UCI "Optical Recognition of Handwritten Digits" (Alpaydin & Kaynak, 1998; CC BY 4.0),
the copy scikit-learn ships as `load_digits` (sklearn/datasets/data/digits.csv.gz): UCI's test
part, 1,797 digits written on NIST's preprinted forms by 13 people who are not MNIST's writers,
each a 32x32 bitmap cut into 4x4 blocks whose ink pixels were counted, so an 8x8 image of
coverage counts 0-16. Each digit is drawn back at scan size: the coverage upsampled (bicubic)
to 64x64, the edge of the ink put where the coverage crosses one half (a soft, 2-pixel ramp:
the anti-aliasing of a scanner), dark ink on white, with a 16-pixel white margin: a 96x96 PNG.

The file has no writer ids; it is split by position, the first 1,000 rows (dev: what may be
looked at while choosing settings) and the last 797 (heldout: reported, never tuned on).
"""
import collections
import gzip
import pathlib
import sys

import numpy as np
from PIL import Image

DEV_ROWS = 1000
SCAN = 64
MARGIN = 16


def render(csv_gz, out_dir):
    rows = np.loadtxt(gzip.open(csv_gz, "rt"), delimiter=",", dtype=np.int64)
    assert rows.shape == (1797, 65), rows.shape
    out = pathlib.Path(out_dir)
    for index, row in enumerate(rows):
        coverage = row[:64].reshape(8, 8).astype(np.float32) / 16.0
        label = int(row[64])
        big = Image.fromarray(coverage, mode="F").resize((SCAN, SCAN), Image.BICUBIC)
        ink = np.clip((np.asarray(big) - 0.5) / 0.25 + 0.5, 0.0, 1.0)
        picture = np.full((SCAN + 2 * MARGIN,) * 2, 255, dtype=np.uint8)
        picture[MARGIN:MARGIN + SCAN, MARGIN:MARGIN + SCAN] = np.round(255 * (1 - ink)).astype(np.uint8)
        part = "dev" if index < DEV_ROWS else "heldout"
        path = out / part / str(label) / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture, mode="L").save(path)
    print(f"{len(rows)} pictures in {out}: dev {DEV_ROWS}, heldout {len(rows) - DEV_ROWS}")


def score(table):
    """`predict`'s table: a header, then `path digit p(0) ... p(9)`; the label is the folder."""
    confusion = collections.defaultdict(collections.Counter)
    for line in open(table):
        fields = line.split()
        if len(fields) != 12 or not fields[1].isdigit():
            continue
        label = int(pathlib.Path(fields[0]).parent.name)
        confusion[label][int(fields[1])] += 1
    total = sum(sum(c.values()) for c in confusion.values())
    right = sum(confusion[d][d] for d in confusion)
    if total == 0:
        sys.exit("no predictions in " + table)
    print(f"accuracy {right / total:.4f} ({right}/{total})")
    print("class      n  accuracy  most often read as (if wrong)")
    for digit in sorted(confusion):
        counts = confusion[digit]
        n = sum(counts.values())
        wrong = [(c, d) for d, c in counts.items() if d != digit]
        worst = max(wrong) if wrong else None
        aside = f"{worst[1]} ({worst[0]})" if worst else "-"
        print(f"{digit:>5} {n:>6}  {counts[digit] / n:8.4f}  {aside}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "render":
        render(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "score":
        score(sys.argv[2])
    else:
        sys.exit(__doc__)
