#!/usr/bin/env bash
# The ONNX export check (issue #25): trains a small run (2 epochs on 2,000 images, validated on
# all 10,000 test images), exports its final model and its epoch-1 checkpoint with
# `export --format onnx`, and has scripts/check_onnx.py compare each, in ONNX Runtime, with
# `eval` of the same weights. The comparison is exact whatever the run's quality, so a small run
# checks as much as the full one.
#
# The Python packages are pinned and installed into a venv outside the clone, one per set of
# pins (so CI runs on one machine install them once). MNIST comes from the cache, or through the
# usual sources when it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."

pins=(onnx==1.23.2 onnxruntime==1.31.1 numpy==2.4.6)
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
venv="$cache/mnist-mlp-ci/venv-$(echo "${pins[*]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$venv/.installed" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  touch "$venv/.installed"
fi

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/mnist-mlp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$bin" train --artifact-dir "$work/artifacts" --run-name onnx --limit-train 2000 \
  --epochs 2 --seed 5 --dashboard none >/dev/null
run="$work/artifacts/runs/onnx"
for checkpoint in final 1; do
  echo "== --checkpoint $checkpoint"
  "$bin" export "$run" --format onnx --checkpoint "$checkpoint" --out "$work/$checkpoint.onnx"
  "$bin" eval "$run" --checkpoint "$checkpoint" --json \
    --probabilities "$work/$checkpoint.csv" >"$work/$checkpoint.json"
  "$venv/bin/python" scripts/check_onnx.py "$work/$checkpoint.onnx" "$work/$checkpoint.json" \
    "$work/$checkpoint.csv" "$cache/mnist-mlp/mnist"
done
