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
# MLflow: `mlflow server` on loopback with a SQLite store and its artifact proxy, read back with
# MlflowClient by scripts/check_mlflow.py (every setting as a param, every metric at every epoch
# equal to history.json's, the tags, the run's files as artifacts, the status): a short run
# with --mlflow; a run stopped with SIGINT (KILLED), then resumed in the same MLflow run
# (FINISHED); the server killed while a run logs there (the training completes and says so
# once; `log RUN --mlflow` then uploads the run whole); and the sweep above with --mlflow too:
# 4 runs under the sweep's parent, in the sweep's experiment.
#
# The Python packages are pinned and installed into a venv outside the clone, one per set of
# pins (so CI runs on one machine install them once). MNIST comes from the cache, or through the
# usual sources when it is empty.
#
#   scripts/test-tracking.sh --setup    # only make the venv (.ci/run does it while Rust compiles)
set -euo pipefail
cd "$(dirname "$0")/.."

# tensorboard: the latest 2.x release; its own dependencies (protobuf, numpy) as pip resolves them.
# mlflow: the latest 3.x release on PyPI whose own pins (mlflow-skinny, mlflow-tracing) are there.
pins=(tensorboard==2.21.0 mlflow==3.17.2)
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
venv="$cache/mnist-mlp-ci/venv-$(echo "${pins[*]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$venv/.installed" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  touch "$venv/.installed"
fi
if [[ ${1:-} == --setup ]]; then
  exit 0
fi
python="$venv/bin/python"

cargo build --release --quiet
bin="$(realpath "${CARGO_TARGET_DIR:-target}")/release/mnist-mlp"
work=$(mktemp -d)
mlflow_pid=
cleanup() {
  if [[ -n $mlflow_pid ]]; then
    kill -9 -- "-$mlflow_pid" 2>/dev/null || true
    wait "$mlflow_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
art="$work/artifacts"

# The MLflow server, on the same SQLite store and artifact directory each time, in its own
# process group (it runs workers); started here, so that it gets ready while TensorBoard's part
# trains, and waited for where it is needed.
# MLflow 3 sends usage telemetry by default: not from CI (which has no web anyway).
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true
mlflow_port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mlflow_uri="http://127.0.0.1:$mlflow_port"
mlflow_start() {
  setsid "$venv/bin/mlflow" server --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
    --backend-store-uri "sqlite:///$work/mlflow.db" \
    --artifacts-destination "$work/mlflow-artifacts" >>"$work/mlflow.log" 2>&1 &
  mlflow_pid=$!
  mlflow_started=$SECONDS
}
mlflow_wait() {
  until "$python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=1)' "$mlflow_uri" 2>/dev/null; do
    if ! kill -0 "$mlflow_pid" 2>/dev/null || ((SECONDS - mlflow_started > 120)); then
      echo "mlflow server did not start:" >&2
      tail -20 "$work/mlflow.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "(mlflow server ready $((SECONDS - mlflow_started)) s after its start)"
}
mlflow_stop() {
  kill -9 -- "-$mlflow_pid"
  wait "$mlflow_pid" 2>/dev/null || true
  mlflow_pid=
}
check_mlflow() { "$python" scripts/check_mlflow.py "$@"; }
mlflow_start

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

# ---- MLflow ----
mlflow_wait
runs="$work/mlflow-runs/runs"
# The runs' settings but their size. (Trainings go in the background as "$bin" itself, so
# that $! is the training's process.)
small=(--seed 5 --dashboard none --artifact-dir "$work/mlflow-runs")

echo "== train --mlflow"
"$bin" train "${small[@]}" --limit-train 2000 --run-name ml --epochs 2 --mlflow "$mlflow_uri" >/dev/null
check_mlflow run "$mlflow_uri" "$runs/ml" FINISHED --experiment mnist-mlp --uploads 1

echo "== SIGINT after epoch 1: KILLED; then --resume: the same MLflow run, FINISHED"
# The URI from MLFLOW_TRACKING_URI, the experiment from the flag; 10,000 images an epoch, as
# above, to stop it in epoch 2 or 3.
MLFLOW_TRACKING_URI=$mlflow_uri "$bin" train "${small[@]}" --limit-train 10000 --run-name ml-int \
  --epochs 3 --mlflow-experiment stopped >/dev/null 2>&1 &
pid=$!
until "$python" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["epochs_done"] < 1)' \
  "$runs/ml-int/run.json" 2>/dev/null; do
  sleep 0.05
done
kill -INT "$pid"
code=0
wait "$pid" || code=$?
[[ $code == 130 ]] || { echo "the interrupted run exited $code, not 130" >&2; exit 1; }
check_mlflow run "$mlflow_uri" "$runs/ml-int" KILLED --experiment stopped --uploads 1
"$bin" train --resume ml-int --artifact-dir "$work/mlflow-runs" --dashboard none >/dev/null
check_mlflow run "$mlflow_uri" "$runs/ml-int" FINISHED --experiment stopped --uploads 1

echo "== the server killed mid-run: the training completes, says so once; log RUN uploads it"
# Long enough to be killed mid-run; one checkpoint kept, so that `log` has little to upload.
"$bin" train "${small[@]}" --limit-train 2000 --run-name ml-down --epochs 30 --keep-last 1 \
  --mlflow "$mlflow_uri" >/dev/null 2>"$work/down.err" &
pid=$!
check_mlflow wait "$mlflow_uri" "$runs/ml-down"
mlflow_stop
wait "$pid"
grep -q '"status": "finished"' "$runs/ml-down/run.json"
said=$(grep -c "^mlflow: $mlflow_uri: " "$work/down.err" || true)
[[ $said == 1 ]] || { echo "the fault was said $said times:" >&2; cat "$work/down.err" >&2; exit 1; }
mlflow_start
mlflow_wait
"$bin" log "$runs/ml-down" --mlflow "$mlflow_uri"
# The training's partial MLflow run, and the whole one `log` made.
check_mlflow run "$mlflow_uri" "$runs/ml-down" FINISHED --experiment mnist-mlp --uploads 2 --log
# ---- end of MLflow's own part ----

echo "== a sweep of 4 trials with --tensorboard and --mlflow"
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
mlflow = "$mlflow_uri"
SPEC
"$bin" sweep init "$work/sweep.toml" --artifact-dir "$art" >/dev/null
"$bin" sweep work tb4 --artifact-dir "$art" >/dev/null
# 1,000 images are 32 steps an epoch: 4 step losses each.
"$python" scripts/check_tensorboard.py --runs 4 --log-every-steps 8 "$work/tb-sweep" "$art"/sweeps/tb4/runs/trial-00{0,1,2,3}
# 4 MLflow runs under the sweep's parent in experiment tb4, the two halving stopped at rung 0
# KILLED, the two it resumed FINISHED in the MLflow runs they started in.
check_mlflow sweep "$mlflow_uri" "$art/sweeps/tb4" 4
