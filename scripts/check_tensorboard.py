#!/usr/bin/env python3
"""Reads the TensorBoard event files of recorded runs with TensorBoard's own EventAccumulator
and checks them against the runs' history.json, config.toml and run.json (issue #35):

    check_tensorboard.py [--log-every-steps N] [--runs K] TB_DIR RUN_DIR...

For each run (TB_DIR/<run name>, as `train --tensorboard TB_DIR` or `log RUN --tensorboard
TB_DIR` wrote it):
- train/: epoch_loss, epoch_accuracy and epoch_learning_rate at steps 0, 1, ... (Keras's epoch
  numbers); validation/: epoch_loss and epoch_accuracy (val_loss, val_accuracy). Each equals
  history.json's value exactly as TensorBoard holds scalars: the f32 nearest the f64 recorded.
  The learning rate equals optimizer.learning_rate (f32) for a constant schedule. An
  interrupted run may hold one epoch more than history.json (recorded, its checkpoint not).
- with --log-every-steps N: train/batch_loss at every multiple of N up to the last step and
  nowhere else; at the last step of an epoch, the epoch's running mean is the epoch's loss
  (to 1e-6: history.json's loss is Burn's epoch mean, batch_loss our running one); an
  interrupted run's also up to where it stopped. Without it:
  no batch_loss (a run logged afterwards has no step losses).
- the HParams plugin's session start in TB_DIR/<run>: group_name the run's name, hparams equal
  to config.toml's settings (train.*, optimizer.*, model.*), and a session end whose status is
  the run's (finished: STATUS_SUCCESS; none while it is interrupted, as it may be resumed).
- every (tag, step) once.
--runs K: TB_DIR holds exactly K runs, each with a session start (a sweep's trials).
"""
import argparse
import json
import pathlib
import struct
import sys
import tomllib

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load(path):
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    events = acc.Scalars(tag)
    steps = [e.step for e in events]
    assert len(steps) == len(set(steps)), f"{tag}: a step logged twice: {steps}"
    return {e.step: e.value for e in events}


def check_epochs(tb_run, history, config, status):
    epochs = len(history["loss"])
    assert epochs > 0, "history.json has no epoch"
    train, valid = load(tb_run / "train"), load(tb_run / "validation")
    wanted = {
        (train, "epoch_loss"): history["loss"],
        (train, "epoch_accuracy"): history["accuracy"],
        (valid, "epoch_loss"): history["val_loss"],
        (valid, "epoch_accuracy"): history["val_accuracy"],
    }
    for (acc, tag), values in wanted.items():
        got = scalars(acc, tag)
        want = {step: f32(v) for step, v in enumerate(values)}
        if status == "interrupted" and len(got) == epochs + 1:
            # Stopped after an epoch was recorded but before its checkpoint was complete:
            # history.json ends before it, and a resume trains it again to the same values.
            del got[epochs]
        assert got == want, f"{tag}: {got} != {want}"
    rates = scalars(train, "epoch_learning_rate")
    rates.pop(epochs, None) if status == "interrupted" else None
    assert sorted(rates) == list(range(epochs)), rates
    if config["optimizer"].get("schedule", "constant") == "constant":
        lr = f32(config["optimizer"]["learning_rate"])
        assert all(v == lr for v in rates.values()), rates
    return train


def check_steps(train, history, run_info, config, every):
    tags = train.Tags()["scalars"]
    if every is None:
        assert "batch_loss" not in tags, tags
        return 0
    batch_size = config["train"]["batch_size"]
    per_epoch = -(-run_info["train_images"] // batch_size)
    epochs = len(history["loss"])
    got = scalars(train, "batch_loss")
    last = per_epoch * epochs
    if run_info["status"] == "interrupted" and got:
        # Stopped mid-epoch: the steps of the epoch it was in are logged too.
        last = max(last, max(got))
    want_steps = list(range(every, last + 1, every))
    assert sorted(got) == want_steps, f"batch_loss steps {sorted(got)} != {want_steps}"
    for epoch in range(1, epochs + 1):
        last = epoch * per_epoch
        if last in got:
            loss = history["loss"][epoch - 1]
            assert abs(got[last] - loss) <= 1e-6 * max(1.0, abs(loss)), (epoch, got[last], loss)
    return len(got)


def check_hparams(tb_run, name, config, status):
    acc = load(tb_run)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]
    ).session_start_info
    assert start.group_name == name, start.group_name
    hparams = {}
    for key, value in start.hparams.items():
        hparams[key] = getattr(value, value.WhichOneof("kind"))
    for section in ("train", "optimizer", "model"):
        for key, value in config.get(section, {}).items():
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            got = hparams.get(f"{section}.{key}")
            assert got == value, f"hparam {section}.{key}: {got!r} != {value!r}"
    # A session ends once the run finished or failed; an interrupted run may be resumed.
    want = {"finished": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE}.get(status)
    end = content.get("_hparams_/session_end_info")
    if want is None:
        assert end is None, f"{status} run with a session end"
    else:
        end = plugin_data_pb2.HParamsPluginData.FromString(end).session_end_info
        assert end.status == want, (end.status, status)
    return hparams


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-every-steps", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("tb_dir", type=pathlib.Path)
    parser.add_argument("run_dirs", type=pathlib.Path, nargs="+")
    args = parser.parse_args()
    seen = []
    for run_dir in args.run_dirs:
        name = run_dir.name
        history = json.loads((run_dir / "history.json").read_text())
        config = tomllib.loads((run_dir / "config.toml").read_text())
        info = json.loads((run_dir / "run.json").read_text())
        tb_run = args.tb_dir / name
        train = check_epochs(tb_run, history, config, info["status"])
        steps = check_steps(train, history, info, config, args.log_every_steps)
        hparams = check_hparams(tb_run, name, config, info["status"])
        seen.append(hparams)
        print(
            f"{name}: {len(history['loss'])} epochs equal history.json (f32), "
            f"{steps} step losses, {len(hparams)} hparams, status {info['status']}"
        )
    if args.runs is not None:
        runs = sorted(p.name for p in args.tb_dir.iterdir() if p.is_dir())
        assert len(runs) == args.runs, runs
        for run in runs:
            content = load(args.tb_dir / run).PluginTagToContent("hparams")
            assert "_hparams_/session_start_info" in content, run
        print(f"{args.tb_dir}: {len(runs)} runs, each with its HParams session")
    print("OK")


if __name__ == "__main__":
    sys.exit(main())
