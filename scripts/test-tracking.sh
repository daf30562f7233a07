#!/usr/bin/env bash
# The TensorBoard and MLflow check (issue #35): real trainings logged to each, read back with
# the trackers' own Python libraries and compared with what the runs recorded.
#
# TensorBoard: a short run (2 epochs on 2,000 images) with --tensorboard, read with
# TensorBoard's EventAccumulator by scripts/check_tensorboard.py (every epoch's values equal
# history.json's, the step losses, the HParams); a run stopped with SIGINT after its first
# epoch (its HParams session left open), then resumed (new files, nothing logged twice, every
# step loss of a resumed epoch its mean); the first run logged afterwards with
# `log RUN --tensorboard` (epochs only), twice, to show a second logging adds nothing; and a
# 4-trial sweep with --tensorboard in its base settings and successive halving: 4 runs with
# their HParams under one directory, the trials that go on to epoch 2 resumed (new event files
# beside the first, nothing logged twice, their session left open at the end of rung 1 and
# closed when they finish).
#
# The Python packages are pinned and installed into a venv outside the clone, one per set of
# pins (so CI runs on one machine install them once). MNIST comes from the cache, or through the
# usual sources when it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."

# tensorboard: the latest 2.x release; its own dependencies (protobuf, numpy) as pip resolves them.
pins=(tensorboard==2.21.0)
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
venv="$cache/mnist-mlp-ci/venv-$(echo "${pins[*]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$venv/.installed" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  touch "$venv/.installed"
fi
python="$venv/bin/python"

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/mnist-mlp"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
art="$work/artifacts"

echo "== train --tensorboard"
# 2,000 images at batch 32 are 63 steps an epoch: every 7th ends each epoch on a logged step.
"$bin" train --artifact-dir "$art" --run-name tb --limit-train 2000 --epochs 2 --seed 5 \
  --dashboard none --tensorboard "$work/tb" --log-every-steps 7 >/dev/null
"$python" scripts/check_tensorboard.py --log-every-steps 7 "$work/tb" "$art/runs/tb"

echo "== Ctrl-C (SIGINT) after epoch 1, then --resume"
# 10,000 images: an epoch takes long enough to stop the run in epoch 2 or 3.
"$bin" train --artifact-dir "$art" --run-name int --limit-train 10000 --epochs 3 --seed 5 \
  --dashboard none --tensorboard "$work/tb" --log-every-steps 1 >/dev/null 2>&1 &
pid=$!
until "$python" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["epochs_done"] < 1)' \
  "$art/runs/int/run.json" 2>/dev/null; do
  sleep 0.05
done
kill -INT "$pid"
code=0
wait "$pid" || code=$?
[[ $code == 130 ]] || { echo "the interrupted run exited $code, not 130" >&2; exit 1; }
"$python" scripts/check_tensorboard.py --log-every-steps 1 "$work/tb" "$art/runs/int"
"$bin" train --resume int --artifact-dir "$art" --dashboard none >/dev/null
"$python" scripts/check_tensorboard.py --log-every-steps 1 "$work/tb" "$art/runs/int"

echo "== log RUN --tensorboard (twice: the second adds nothing)"
for _ in 1 2; do
  "$bin" log tb --artifact-dir "$art" --tensorboard "$work/tb-log" >/dev/null
done
"$python" scripts/check_tensorboard.py "$work/tb-log" "$art/runs/tb"

echo "== a sweep of 4 trials with --tensorboard"
cat >"$work/sweep.toml" <<SPEC
[sweep]
name = "tb4"
method = "grid"
halving = { min_epochs = 1, eta = 2 }
[sweep.grid]
learning_rate = [0.001, 0.002]
hidden = [[32], [64]]
[base.train]
epochs = 2
limit_train = 1000
[base.tracking]
tensorboard = "$work/tb-sweep"
log_every_steps = 8
SPEC
"$bin" sweep init "$work/sweep.toml" --artifact-dir "$art" >/dev/null
"$bin" sweep work tb4 --artifact-dir "$art" >/dev/null
# 1,000 images are 32 steps an epoch: 4 step losses each.
"$python" scripts/check_tensorboard.py --runs 4 --log-every-steps 8 "$work/tb-sweep" "$art"/sweeps/tb4/runs/trial-00{0,1,2,3}
