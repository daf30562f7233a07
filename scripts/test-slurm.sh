#!/usr/bin/env bash
# A sweep on a real Slurm (issue #23): installs Debian's slurm-wlm and munge when missing,
# starts munged, slurmctld and slurmd as a one-node cluster on this machine (everything under a
# temporary directory: config, key, state, logs; nothing in /etc is changed), submits a 4-trial
# sweep of tiny runs as `sbatch --array=0-3` whose tasks run `mnist-mlp sweep work` unchanged
# (each reads SLURM_ARRAY_TASK_ID), waits for the array (bounded), checks that every trial
# finished once, on its own task, and stops the daemons.
#
# Runs as root (the daemons' user here; on a real cluster they are the site's). MNIST comes from
# the cache, filled through the usual sources when it is empty.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
fi

cargo build --release --quiet
bin="$(realpath "${CARGO_TARGET_DIR:-target}")/release/mnist-mlp"
"$bin" data >/dev/null # MNIST in the cache before the jobs need it
mnist="${XDG_CACHE_HOME:-$HOME/.cache}/mnist-mlp/mnist"

work=$(mktemp -d)
chmod 755 "$work"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop EXIT
mkdir -p "$work"/{state,spool,munge}

# munge: its own key and socket, so that a munged already on the machine is left alone.
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --foreground --force --key-file="$work/munge/munge.key" \
  --socket="$work/munge/munge.socket" --pid-file="$work/munge/munged.pid" \
  --log-file="$work/munge/munged.log" --seed-file="$work/munge/munge.seed" \
  >"$work/munged.out" 2>&1 &
pids+=($!)

export SLURM_CONF="$work/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=mnist
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/munge.socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
# No cgroups: processes are tracked through /proc, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

# Waits up to $1 seconds for command $2... to succeed.
wait_for() {
  local limit=$1
  shift
  for _ in $(seq "$limit"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}
wait_for 10 test -S "$work/munge/munge.socket" || {
  echo "munged did not start:" >&2
  cat "$work/munge/munged.log" >&2
  exit 1
}
slurmctld -D -i >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -N localhost >"$work/slurmd.out" 2>&1 &
pids+=($!)
if ! wait_for 60 bash -c 'sinfo -h -N -o %t | grep -qE "^(idle|mix|alloc)"'; then
  echo "the node did not come up:" >&2
  sinfo -N >&2 || true
  tail -n 20 "$work"/slurmctld.log "$work"/slurmd.log "$work"/*.out >&2 || true
  exit 1
fi
sinfo -N

cat >"$work/spec.toml" <<EOF
[sweep]
name = "slurm"
method = "grid"
[sweep.grid]
hidden = [[16], [32]]
learning_rate = [1e-3, 3e-4]
[base.train]
epochs = 2
limit_train = 1000
limit_valid = 300
EOF
"$bin" sweep init "$work/spec.toml" --artifact-dir "$work/artifacts"

# The batch script a user would write (docs/sweeps.md): one task per trial.
cat >"$work/sweep.sbatch" <<EOF
#!/bin/bash
#SBATCH --job-name=mnist-sweep
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --output=$work/task-%a.out
#SBATCH --error=$work/task-%a.err
exec "$bin" sweep work slurm --artifact-dir "$work/artifacts" --data-dir "$mnist"
EOF
start=$SECONDS
job=$(sbatch --parsable "$work/sweep.sbatch")
echo "submitted array job $job"
if ! wait_for 600 bash -c "[ -z \"\$(squeue -h -j $job)\" ]"; then
  echo "the array did not finish in 600 s:" >&2
  squeue >&2
  exit 1
fi
echo "array done in $((SECONDS - start)) s"

"$bin" sweep status slurm --artifact-dir "$work/artifacts"
fail=0
for i in 0 1 2 3; do
  trial=$(printf 'trial-%03d' "$i")
  run="$work/artifacts/sweeps/slurm/runs/$trial"
  if ! grep -q '"status": *"finished"' "$run/run.json" 2>/dev/null; then
    echo "$trial: not finished" >&2
    fail=1
  fi
  # Its owner recorded as docs/sweeps.md says: this node, and its PID namespace.
  if ! grep -q "\"host\": *\"$(hostname)\"" "$run/run.json" ||
    ! grep -q '"pid_ns": *[0-9]' "$run/run.json"; then
    echo "$trial: no owner recorded:" >&2
    cat "$run/run.json" >&2 || true
    fail=1
  fi
  # Task i trained trial i, and printed its metrics for the collector.
  if ! grep -qx "# $trial: finished 2 epochs" "$work/task-$i.out" ||
    ! grep -q '^val_accuracy=0\.[0-9]' "$work/task-$i.out"; then
    echo "task $i did not report $trial:" >&2
    cat "$work/task-$i.out" "$work/task-$i.err" >&2 || true
    fail=1
  fi
done
claims=$(ls "$work/artifacts/sweeps/slurm/claims/r0" | tr '\n' ' ')
if [[ "$claims" != "trial-000 trial-001 trial-002 trial-003 " ]]; then
  echo "claims: $claims" >&2
  fail=1
fi
((fail == 0)) && echo "every trial finished once, on its own array task"
exit "$fail"
