#!/usr/bin/env bash
# How well a model reads real handwritten digits that are not MNIST's: trains with a config (or
# takes a recorded run), runs `predict` on the pictures and prints its accuracy and per-class
# accuracy next to the run's MNIST val_accuracy.
#
#   scripts/real-digits.sh --config config/handwriting.toml   # train, then score
#   scripts/real-digits.sh --run artifacts/runs/NAME           # score a run already trained
#   options: --part heldout|dev (default heldout), --artifact-dir DIR (for --config)
#
# The digits (scripts/real_digits.py says which set, its licence and how the pictures are made)
# come from scikit-learn's wheel, fetched with `pip download`; the venv (numpy, Pillow) and the
# pictures live in $REAL_DIGITS_CACHE (default ~/.cache/mnist-mlp/real-digits), not in the repo.
# Report on `heldout`; choose settings on `dev` only.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${REAL_DIGITS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mnist-mlp/real-digits}
sklearn=scikit-learn==1.9.1
# sha256 of sklearn/datasets/data/digits.csv.gz in that wheel (the same file for years).
digits_sha=09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22

config="" run="" part=heldout artifact_dir=artifacts
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --run) run=$2; shift 2 ;;
    --part) part=$2; shift 2 ;;
    --artifact-dir) artifact_dir=$2; shift 2 ;;
    *) echo "error: unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done
if { [ -n "$config" ] && [ -n "$run" ]; } || { [ -z "$config" ] && [ -z "$run" ]; }; then
  echo "error: give one of --config FILE or --run RUN" >&2; exit 2
fi
case $part in dev|heldout) ;; *) echo "error: --part: dev or heldout, not $part" >&2; exit 2 ;; esac

# The digits, once: a venv, the wheel, the pictures.
venv=$cache/venv
pictures=$cache/optdigits
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy pillow
fi
if [ ! -f "$pictures/.done" ]; then
  rm -rf "$cache/wheel" "$pictures"
  "$venv/bin/pip" download -q --no-deps --only-binary=:all: "$sklearn" -d "$cache/wheel"
  csv=$cache/wheel/digits.csv.gz
  "$venv/bin/python" - "$cache/wheel" "$csv" <<'EOF'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/scikit_learn-*.whl")[0]
open(sys.argv[2], "wb").write(zipfile.ZipFile(wheel).read("sklearn/datasets/data/digits.csv.gz"))
EOF
  echo "$digits_sha  $csv" | sha256sum --check --quiet
  "$venv/bin/python" "$here/real_digits.py" render "$csv" "$pictures"
  touch "$pictures/.done"
fi

cd "$repo"
cargo build --release --quiet
bin=$repo/target/release/mnist-mlp
if [ -n "$config" ]; then
  # The last line train prints is the run directory.
  run=$("$bin" train --config "$config" --artifact-dir "$artifact_dir" --dashboard none | tail -n 1)
fi
table=$(mktemp)
trap 'rm -f "$table"' EXIT
find "$pictures/$part" -name '*.png' | sort | xargs "$bin" predict "$run" --artifact-dir "$artifact_dir" > "$table"
val=$("$venv/bin/python" -c 'import json, sys
v = json.load(open(sys.argv[1]))["val_accuracy"]
print("%.4f (epoch %d)" % (v[-1], len(v)))' "$run/history.json")
echo "run: $run"
echo "MNIST val_accuracy: $val"
echo "real digits: UCI optdigits ($part part, $(find "$pictures/$part" -name '*.png' | wc -l) pictures) through predict"
"$venv/bin/python" "$here/real_digits.py" score "$table"
