#!/usr/bin/env bash
# The wgpu benchmark: the tutorial (5 epochs, full MNIST) at batch 32 and 128 on a wgpu adapter,
# then `eval` of each run, printed as one table with the adapter, its driver and the GPU.
# A benchmark, not a test: CI does not run it.
#
#   scripts/bench-gpu.sh [--bin PATH] [--data DIR] [--batches "32 128"] [--epochs 5]
#                        [--device N] [--limit-train N] [--limit-valid N] [--output FILE]
#   scripts/bench-gpu.sh --pack DIR
#
# Without --bin it builds `cargo build --release --features wgpu` first. With --bin it runs that
# binary (or its .gz) and builds nothing: how a machine lent for a few minutes runs it. --pack
# DIR builds here and writes the kit to carry there: DIR/mnist-mlp.gz (stripped) and
# DIR/mnist/ (the four MNIST files, gzipped, from the user cache); BENCHMARKS.md has the
# commands. --data is a directory with the four MNIST IDX files, raw or .gz (default: the user
# cache, filled from the web or npm).
# --limit-train/--limit-valid shorten the runs, to check the script on a slow adapter such as
# lavapipe. Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="" data="" batches="32 128" epochs=5 device=0 limits=() output="" pack=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pack) pack=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --limit-train | --limit-valid) limits+=("$1" "$2"); shift 2 ;;
    --output) output=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -n "$pack" ]; then
  cargo build --release --features wgpu --quiet
  mkdir -p "$pack/mnist"
  built=${CARGO_TARGET_DIR:-target}/release/mnist-mlp
  strip -o "$pack/mnist-mlp" "$built" && gzip -f "$pack/mnist-mlp"
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/mnist-mlp/mnist
  "$built" data --data-dir "$cache" >/dev/null # fails, naming the file, unless all four are right
  for f in "$cache"/*-ubyte; do gzip -c "$f" >"$pack/mnist/$(basename "$f").gz"; done
  du -sh "$pack"
  exit 0
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-bench-gpu.XXXXXX")
trap 'rm -rf "$out"' EXIT
if [ -z "$bin" ]; then
  cargo build --release --features wgpu --quiet
  bin=${CARGO_TARGET_DIR:-target}/release/mnist-mlp
elif [[ $bin == *.gz ]]; then
  gunzip -c "$bin" >"$out/mnist-mlp" && chmod +x "$out/mnist-mlp"
  bin=$out/mnist-mlp
fi
data_args=()
[ -n "$data" ] && data_args=(--data-dir "$data")
# EGL's Wayland probe complains on stderr where this is unset (a root shell).
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$out}

for batch in $batches; do
  echo "== batch $batch: train" >&2
  start=$(date +%s.%N)
  "$bin" train --backend wgpu --device "$device" --batch-size "$batch" --epochs "$epochs" \
    --dashboard plain --artifact-dir "$out/artifacts" --run-name "b$batch" \
    "${data_args[@]}" "${limits[@]}" >&2
  end=$(date +%s.%N)
  echo "$start $end" >"$out/b$batch.wall"
  echo "== batch $batch: eval" >&2
  "$bin" eval "b$batch" --artifact-dir "$out/artifacts" --json "${data_args[@]}" \
    >"$out/b$batch.eval.json"
done

gpu="no nvidia-smi"
command -v nvidia-smi >/dev/null 2>&1 &&
  gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "machine: $(nproc) CPUs; nvidia-smi: $gpu"
  python3 - "$out" "$batches" <<'EOF'
import json, statistics, sys
out, batches = sys.argv[1], sys.argv[2].split()
rows = []
for b in batches:
    run = f"{out}/artifacts/runs/b{b}"
    info = json.load(open(f"{run}/run.json"))
    hist = json.load(open(f"{run}/history.json"))
    ev = json.load(open(f"{out}/b{b}.eval.json"))
    start, end = map(float, open(f"{out}/b{b}.wall").read().split())
    if b == batches[0]:
        print(f"adapter: {info['device']}")
        print(f"train {info['train_images']} images, validate {info['valid_images']}; "
              "epoch = train + validation, seconds\n")
        print("| batch | epoch times (s) | median (s) | process wall (s) | loss | accuracy "
              "| val_loss | val_accuracy | eval images/s (one process, kernels compiled in it) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    times = info["epoch_seconds"]
    print(f"| {b} | {' '.join(f'{t:.2f}' for t in times)} | {statistics.median(times):.2f} "
          f"| {end - start:.1f} | {hist['loss'][-1]:.4f} | {hist['accuracy'][-1]:.4f} "
          f"| {hist['val_loss'][-1]:.4f} | {hist['val_accuracy'][-1]:.4f} "
          f"| {ev['images'] / ev['score_seconds']:,.0f} |")
EOF
} | if [ -n "$output" ]; then tee "$output"; else cat; fi
