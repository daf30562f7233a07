#!/usr/bin/env python3
"""Reads back, with MLflow's own client, what `mnist-mlp train --mlflow URI` (or `mnist-mlp log
RUN --mlflow URI`) logged, and compares it with the run directory:

    python3 scripts/check_mlflow.py run URI RUN_DIR STATUS [--experiment NAME] [--uploads N] [--log]
    python3 scripts/check_mlflow.py sweep URI SWEEP_DIR TRIALS
    python3 scripts/check_mlflow.py wait URI RUN_DIR

`run`: the MLflow run tagged `mnist-mlp.run_dir` = RUN_DIR (absolute) must have every
setting of RUN_DIR/config.toml as a `section.key` param with its value, every metric of
history.json at every epoch (step = epoch) exactly, a learning_rate per epoch, the run's tags,
every file of RUN_DIR as an artifact of the same size (experiment.log: by name), and status
STATUS (FINISHED, KILLED, FAILED); `--uploads N`: exactly N MLflow runs carry that tag (a `log` after a partial upload
adds one); the run checked is the newest the training made (tag `mnist-mlp.source` = train),
with `--log` the newest `log` made. `sweep`: the experiment named after the sweep holds the
sweep's parent run (tag `mnist-mlp.sweep`) and TRIALS runs under it (`mlflow.parentRunId`),
each checked as `run` with the status its run.json gives (interrupted: KILLED). `wait`: waits
(60 s at most) until an MLflow run tagged with RUN_DIR has an epoch's loss: a training is then
logging there.
Needs the `mlflow` package (scripts/test-tracking.sh installs a pinned one). Prints what it
compared; exits 1 on any difference.
"""

import json
import os
import sys
import time
import tomllib
from pathlib import Path

from mlflow.tracking import MlflowClient

EPOCH_KEYS = ["loss", "accuracy", "val_loss", "val_accuracy"]
# MLflow's status of a run by its run.json's (a trial successive halving stopped: interrupted).
STATUS = {"finished": "FINISHED", "interrupted": "KILLED", "failed": "FAILED"}


def fail(message):
    print(f"check_mlflow: {message}", file=sys.stderr)
    sys.exit(1)


def flatten(prefix, table, out):
    for key, value in table.items():
        if isinstance(value, dict):
            flatten(f"{prefix}{key}.", value, out)
        else:
            out[f"{prefix}{key}"] = value


def param_value(text):
    """A param as logged (a TOML value, strings bare) back to a value."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def runs_of(client, run_dir, experiment_ids=None):
    ids = experiment_ids or [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(
        ids,
        filter_string=f"tags.`mnist-mlp.run_dir` = '{run_dir}'",
        order_by=["attributes.start_time DESC"],
    )


def artifacts(client, run_id, path=None):
    found = {}
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            found.update(artifacts(client, run_id, item.path))
        else:
            # MLflow lists an empty file with no size.
            found[item.path] = item.file_size or 0
    return found


def check_run(client, run, run_dir, status):
    run_id, name = run.info.run_id, run_dir.name
    if run.info.status != status:
        fail(f"{name}: status {run.info.status}, expected {status}")

    config = {}
    flatten("", tomllib.loads((run_dir / "config.toml").read_text()), config)
    params = {k: param_value(v) for k, v in run.data.params.items()}
    if params != config:
        diff = sorted(set(params.items()) ^ set((k, v) for k, v in config.items()
                                                if not isinstance(v, list)))
        fail(f"{name}: params differ from config.toml: {diff[:6]}")

    history = json.loads((run_dir / "history.json").read_text())
    epochs = len(history["loss"])
    for key in EPOCH_KEYS:
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        expected = [(i + 1, v) for i, v in enumerate(history[key])]
        if logged != expected:
            fail(f"{name}: {key} {logged} != history.json's {expected}")
    rates = client.get_metric_history(run_id, "learning_rate")
    if sorted(m.step for m in rates) != list(range(1, epochs + 1)):
        fail(f"{name}: learning_rate at steps {sorted(m.step for m in rates)}, expected 1..{epochs}")

    info = json.loads((run_dir / "run.json").read_text())
    tags = run.data.tags
    for key, expected in [("mlflow.runName", info["name"]), ("backend", info["backend"]),
                          ("mnist-mlp.version", info["mnist_mlp_version"])]:
        if tags.get(key) != expected:
            fail(f"{name}: tag {key} = {tags.get(key)!r}, expected {expected!r}")

    files = {str(p.relative_to(run_dir)): p.stat().st_size
             for p in run_dir.rglob("*") if p.is_file()}
    listed = artifacts(client, run_id)
    # experiment.log is Burn's log, which the process may still append to after the tracker
    # took the run's files (a sweep worker's next trial): its name is compared, not its size.
    for sizes in (files, listed):
        if "experiment.log" in sizes:
            sizes["experiment.log"] = "any"
    if listed != files:
        fail(f"{name}: artifacts {sorted(listed.items())} != the run's files {sorted(files.items())}")
    print(f"{name}: {run.info.status}, {len(params)} params, {epochs} epochs x "
          f"{len(EPOCH_KEYS) + 1} metrics, {len(listed)} artifacts: as recorded")
    return run


def main(argv):
    if len(argv) < 3 or argv[0] not in ("run", "sweep", "wait"):
        fail("usage:\n" + "\n".join(__doc__.splitlines()[3:6]))
    mode, uri = argv[0], argv[1]
    client = MlflowClient(tracking_uri=uri)
    if mode == "wait":
        run_dir = Path(os.path.abspath(argv[2]))
        for _ in range(600):
            if any(client.get_metric_history(r.info.run_id, "loss") for r in runs_of(client, run_dir)):
                return
            time.sleep(0.1)
        fail(f"{run_dir}: no MLflow run with an epoch's loss after 60 s")
    if mode == "run":
        run_dir, status = Path(os.path.abspath(argv[2])), argv[3]
        runs = runs_of(client, run_dir)
        if not runs:
            fail(f"{run_dir}: no MLflow run tagged with it at {uri}")
        if "--uploads" in argv:
            wanted = int(argv[argv.index("--uploads") + 1])
            if len(runs) != wanted:
                fail(f"{run_dir.name}: {len(runs)} MLflow runs, expected {wanted}")
        source = "log" if "--log" in argv else "train"
        mine = [r for r in runs if r.data.tags.get("mnist-mlp.source") == source]
        if not mine:
            fail(f"{run_dir}: no MLflow run tagged with it made by {source}")
        run = check_run(client, mine[0], run_dir, status)
        if "--experiment" in argv:
            wanted = argv[argv.index("--experiment") + 1]
            got = client.get_experiment(run.info.experiment_id).name
            if got != wanted:
                fail(f"{run_dir.name}: in experiment {got!r}, expected {wanted!r}")
        return

    sweep_dir, trials = Path(os.path.abspath(argv[2])), int(argv[3])
    experiment = client.get_experiment_by_name(sweep_dir.name)
    if experiment is None:
        fail(f"no experiment {sweep_dir.name!r} at {uri}")
    ids = [experiment.experiment_id]
    parents = client.search_runs(ids, filter_string=f"tags.`mnist-mlp.sweep` = '{sweep_dir.name}'")
    if len(parents) != 1:
        fail(f"{sweep_dir.name}: {len(parents)} parent runs, expected 1")
    parent = parents[0].info.run_id
    children = client.search_runs(ids, filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    run_dirs = sorted((sweep_dir / "runs").iterdir())
    if len(children) != trials or len(run_dirs) != trials:
        fail(f"{sweep_dir.name}: {len(children)} MLflow runs under the parent and "
             f"{len(run_dirs)} trial runs, expected {trials}")
    for run_dir in run_dirs:
        runs = runs_of(client, run_dir, ids)
        if len(runs) != 1 or runs[0].data.tags.get("mlflow.parentRunId") != parent:
            fail(f"{run_dir.name}: {len(runs)} MLflow runs, expected 1 under the parent")
        recorded = json.loads((run_dir / "run.json").read_text())["status"]
        check_run(client, runs[0], run_dir, STATUS[recorded])
    print(f"{sweep_dir.name}: {trials} trials under parent {parent} in experiment "
          f"{sweep_dir.name!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
