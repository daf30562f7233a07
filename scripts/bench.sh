#!/usr/bin/env bash
# Side-by-side benchmark: mnist-mlp (release) against the PyTorch and Keras reference scripts,
# one after the other on this machine, in one invocation. A benchmark, not a test: CI does
# not run it.
#
#   scripts/bench.sh --setup            # once: the reference systems' venv, .venv-bench
#   scripts/bench.sh [--batch 32] [--epochs 5] [--python PY] [--refs DIR]
#                    [--only mnist-mlp|pytorch|keras[,...]] [--simd avx512|avx2|none]
#                    [--threads N] [--output FILE] [-- TRAIN-ARGS...]
#
# The reference systems are the repository's own: bench/pytorch_mlp.py and bench/keras_mlp.py,
# the same network, Keras's RMSprop, MNIST from the same cache and the same epoch (train, then
# validate on the 10,000 test images) as `train`. `--setup` makes .venv-bench (python3-venv) and
# installs bench/requirements.txt's pinned TensorFlow, Keras and PyTorch into it (~3.3 GB; torch's
# default wheel is the CUDA build and runs on CPU); later runs use it. PY overrides that Python
# (default: .venv-bench/bin/python, else python3). A system that fails (its packages missing, say)
# is reported and left out of the table. Peak RSS and CPU time over wall (user + system over
# elapsed, the whole process) come from /usr/bin/time -v. --simd sets MNIST_MLP_SIMD and
# --threads passes `--threads N` to mnist-mlp only; --only takes a comma-separated list (e.g.
# `--only mnist-mlp,pytorch`). TRAIN-ARGS go to `mnist-mlp train` only (e.g. `-- --backend
# flex`). The table, headed by the date, machine, commit and load average, is printed and, with
# --output, also written to FILE, ready for BENCHMARKS.md.
#
# Time on a quiet machine: the systems run one after the other, and a busy machine distorts
# them unequally (PyTorch's OpenMP threads spin-wait, so it slows down far more than the rest).
set -euo pipefail
cd "$(dirname "$0")/.."

batch=32 epochs=5 python="" refs=bench only="" output="" simd="" threads="" extra=() setup=""
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) batch=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --refs) refs=$2; shift 2 ;;
    --setup) setup=1; shift ;;
    --only) only=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    --simd) simd=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -n "$setup" ]; then
  # The venv inside the clone (git-ignored), so that nothing outside the repository is needed.
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install --quiet --upgrade pip
  .venv-bench/bin/pip install --quiet -r bench/requirements.txt
  .venv-bench/bin/python -c 'import torch, keras, tensorflow; print("bench venv: torch", torch.__version__, "keras", keras.__version__, "tensorflow", tensorflow.__version__)'
  exit 0
fi
if [ -z "$python" ]; then
  if [ -x .venv-bench/bin/python ]; then python=.venv-bench/bin/python; else python=python3; fi
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/mnist-mlp-bench.XXXXXX")
trap 'rm -rf "$out"' EXIT
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/mnist-mlp

run() { # name, then the command
  local name=$1; shift
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then return; fi
  echo "== $name: $*" >&2
  if /usr/bin/time -v -o "$out/$name.time" "$@" >"$out/$name.log" 2>&1; then
    echo ok >"$out/$name.status"
  else
    echo "failed (see below)" >"$out/$name.status"; tail -5 "$out/$name.log" >&2
  fi
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
ours=(train --batch-size "$batch" --epochs "$epochs" --dashboard none
  --artifact-dir "$out/artifacts" --run-name bench)
[ -n "$threads" ] && ours+=(--threads "$threads")
run mnist-mlp env ${simd:+MNIST_MLP_SIMD=$simd} "$bin" "${ours[@]}" "${extra[@]}"
run pytorch "$python" "$refs/pytorch_mlp.py" --opt keras --batch "$batch" --epochs "$epochs"
run keras "$python" "$refs/keras_mlp.py" --batch "$batch" --epochs "$epochs"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB; load average before $load_before, after $load_after"
  python3 scripts/bench_report.py "$out" "$batch" "$epochs"
} | if [ -n "$output" ]; then tee "$output"; else cat; fi
