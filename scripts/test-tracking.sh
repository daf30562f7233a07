#!/usr/bin/env bash
# The tracking check (issue #35): runs logged to TensorBoard and MLflow as their own readers see
# them. Small runs (2,000 training images, 2 epochs): the comparisons are exact whatever the
# run's quality.
#
# The Python packages are pinned and installed into a venv outside the clone, one per set of
# pins (so CI runs on one machine install them once). MNIST comes from the cache, or through the
# usual sources when it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."

pins=(mlflow==3.17.2)
cache="${XDG_CACHE_HOME:-$HOME/.cache}"
venv="$cache/mnist-mlp-ci/venv-$(echo "${pins[*]}" | sha256sum | cut -c1-12)"
if [[ ! -f "$venv/.installed" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
  touch "$venv/.installed"
fi

cargo build --release --quiet
bin="$(realpath "${CARGO_TARGET_DIR:-target}")/release/mnist-mlp"
work=$(mktemp -d)
mlflow_pid=
cleanup() {
  [[ -n $mlflow_pid ]] && kill -- "-$mlflow_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The small run's settings but its epochs. (Trainings go in the background as "$bin" itself, not
# through a function, so that $! is the training's process and SIGINT reaches it.)
small=(--limit-train 2000 --seed 5 --dashboard none)

# Waits until `history.json` of run directory $1, trained by process $2, holds an epoch.
wait_for_epoch() {
  local history="$1/history.json"
  for _ in $(seq 600); do
    kill -0 "$2" 2>/dev/null || { echo "the training of $1 ended early" >&2; return 1; }
    [[ -s $history ]] && python3 -c 'import json, sys
sys.exit(len(json.load(open(sys.argv[1]))["loss"]) < 1)' "$history" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$history: no epoch recorded" >&2
  return 1
}

# ---- MLflow: `mlflow server` on loopback, read back through MlflowClient (check_mlflow.py) ----
mlflow_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mlflow_uri="http://127.0.0.1:$mlflow_port"
check_mlflow() { "$venv/bin/python" scripts/check_mlflow.py "$@"; }

# Starts the server (again) on the same SQLite store and artifact directory, in its own process
# group (it runs workers), and waits until it answers.
mlflow_start() {
  setsid "$venv/bin/mlflow" server --host 127.0.0.1 --port "$mlflow_port" --workers 1 \
    --backend-store-uri "sqlite:///$work/mlflow.db" \
    --artifacts-destination "$work/mlflow-artifacts" >>"$work/mlflow.log" 2>&1 &
  mlflow_pid=$!
  local start=$SECONDS
  until "$venv/bin/python" -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/health", timeout=1)' "$mlflow_uri" 2>/dev/null; do
    if ! kill -0 "$mlflow_pid" 2>/dev/null || ((SECONDS - start > 120)); then
      echo "mlflow server did not start:" >&2
      tail -20 "$work/mlflow.log" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "mlflow server up in $((SECONDS - start)) s"
}
mlflow_stop() {
  kill -9 -- "-$mlflow_pid"
  wait "$mlflow_pid" 2>/dev/null || true
  mlflow_pid=
}

mlflow_start
runs="$work/mlflow-runs/runs"

echo "== train --mlflow"
"$bin" train "${small[@]}" --artifact-dir "$work/mlflow-runs" --run-name ml --epochs 2 --mlflow "$mlflow_uri" >/dev/null
check_mlflow run "$mlflow_uri" "$runs/ml" FINISHED --experiment mnist-mlp --uploads 1

echo "== SIGINT: KILLED (the URI from MLFLOW_TRACKING_URI, the experiment from the flag)"
MLFLOW_TRACKING_URI=$mlflow_uri "$bin" train "${small[@]}" --artifact-dir "$work/mlflow-runs" --run-name ml-int \
  --epochs 200 --mlflow-experiment stopped >/dev/null 2>"$work/int.err" &
pid=$!
wait_for_epoch "$runs/ml-int" "$pid"
kill -INT "$pid"
status=0
wait "$pid" || status=$?
((status == 130)) || { echo "train stopped by SIGINT exited $status, expected 130" >&2; exit 1; }
check_mlflow run "$mlflow_uri" "$runs/ml-int" KILLED --experiment stopped --uploads 1

echo "== the server killed mid-run: the training completes, says so once; log RUN uploads it"
# Long enough to be killed mid-run; one checkpoint kept, so that `log` has little to upload.
"$bin" train "${small[@]}" --artifact-dir "$work/mlflow-runs" --run-name ml-down --epochs 30 \
  --keep-last 1 --mlflow "$mlflow_uri" >/dev/null 2>"$work/down.err" &
pid=$!
check_mlflow wait "$mlflow_uri" "$runs/ml-down"
mlflow_stop
wait "$pid"
grep -q '"status": "finished"' "$runs/ml-down/run.json"
said=$(grep -c "^mlflow: $mlflow_uri: " "$work/down.err" || true)
((said == 1)) || { echo "the fault said $said times:" >&2; cat "$work/down.err" >&2; exit 1; }
mlflow_start
"$bin" log "$runs/ml-down" --mlflow "$mlflow_uri"
# The partial MLflow run of the training, and the whole one `log` made.
check_mlflow run "$mlflow_uri" "$runs/ml-down" FINISHED --experiment mnist-mlp --uploads 2 --log

echo "== a 4-trial sweep: 4 MLflow runs under the sweep's parent, in the sweep's experiment"
cat >"$work/sweep.toml" <<EOF
[sweep]
name = "tracked"
method = "grid"

[sweep.grid]
learning_rate = [1e-3, 3e-4]
seed = [1, 2]

[base.train]
epochs = 2
limit_train = 2000

[base.tracking]
mlflow = "$mlflow_uri"
EOF
"$bin" sweep init "$work/sweep.toml" --artifact-dir "$work/sweeps"
"$bin" sweep work tracked --artifact-dir "$work/sweeps" >/dev/null
check_mlflow sweep "$mlflow_uri" "$work/sweeps/sweeps/tracked" 4
# ---- end of MLflow ----
