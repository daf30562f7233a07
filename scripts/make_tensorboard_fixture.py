#!/usr/bin/env python3
"""Writes tests/fixtures/tensorboard/events.bin with TensorBoard's own event writer, once, for
the Rust tests of our event files (src/training/tracking): the framing and masked CRC-32C, and
the Event, Summary and HParams messages, as TensorBoard itself encodes them.

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard==2.21.0
    /tmp/tb/bin/python scripts/make_tensorboard_fixture.py

Three records: the `file_version` event the writer puts first, a scalar `epoch_loss` of 0.25
at step 3 (a `simple_value`, as our writer writes scalars) and an HParams session start with
one number, one string and one bool. Wall times are fixed, so only the first record (the
writer's own, stamped with the time it was made) differs when the file is made again.
"""
import glob
import os
import pathlib
import shutil
import tempfile

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.summary.writer.event_file_writer import EventFileWriter

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/tensorboard/events.bin"

with tempfile.TemporaryDirectory() as logdir:
    writer = EventFileWriter(logdir)
    scalar = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="epoch_loss", simple_value=0.25)]
    )
    writer.add_event(event_pb2.Event(wall_time=1700000000.5, step=3, summary=scalar))
    session = hp.hparams_pb(
        {"optimizer.learning_rate": 0.001, "optimizer.name": "rmsprop", "train.shuffle": True},
        trial_id="run-1",
        start_time_secs=1700000000.0,
    )
    writer.add_event(event_pb2.Event(wall_time=1700000000.0, step=0, summary=session))
    writer.close()
    (path,) = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, OUT)
print(OUT)
