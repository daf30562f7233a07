"""Turns one scripts/bench.sh invocation's logs into the side-by-side table.

mnist-mlp's numbers come from its run directory (run.json's epoch_seconds, history.json);
the references' from their `[anchor]` lines; peak RSS from `/usr/bin/time -v`.
"""
import json
import os
import re
import statistics
import sys

out, batch, epochs = sys.argv[1], sys.argv[2], sys.argv[3]


def peak_rss_mb(name):
    try:
        text = open(os.path.join(out, f"{name}.time")).read()
    except OSError:
        return None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1)) / 1024 if m else None


def cpu_over_wall(name):
    """User + system time over elapsed time, from `/usr/bin/time -v`."""
    try:
        text = open(os.path.join(out, f"{name}.time")).read()
    except OSError:
        return None
    user = re.search(r"User time \(seconds\): ([\d.]+)", text)
    system = re.search(r"System time \(seconds\): ([\d.]+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if not (user and system and wall):
        return None
    seconds = 0.0
    for part in wall.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return (float(user.group(1)) + float(system.group(1))) / seconds if seconds else None


def status(name):
    try:
        return open(os.path.join(out, f"{name}.status")).read().strip()
    except OSError:
        return "not run"


def ours():
    run = os.path.join(out, "artifacts", "runs", "bench")
    info = json.load(open(os.path.join(run, "run.json")))
    hist = json.load(open(os.path.join(run, "history.json")))
    return dict(
        secs=info["epoch_seconds"],
        loss=hist["loss"][-1], accuracy=hist["accuracy"][-1],
        val_loss=hist["val_loss"][-1], val_accuracy=hist["val_accuracy"][-1],
        label=f"mnist-mlp {info['mnist_mlp_version']} ({info['backend']}"
        + (f", {info['kernels']} kernels" if "kernels" in info else "")
        + (f", SIMD {info['simd']}" if "simd" in info else "")
        + (f", {info['threads']} threads" if "threads" in info else "")
        + f", {info['device']})",
    )


EPOCH = re.compile(
    r"\[anchor\] epoch (\d+): wall ([\d.]+)s \(train ([\d.]+)s\) loss ([\d.]+) accuracy ([\d.]+) "
    r"val_loss ([\d.]+) val_accuracy ([\d.]+)")
FRAMEWORK = re.compile(r"\[anchor\] framework (\S+) (\S+)")


def anchor(name):
    text = open(os.path.join(out, f"{name}.log")).read()
    rows = [m.groups() for m in EPOCH.finditer(text)]
    if not rows:
        raise ValueError("no [anchor] epoch lines")
    last = rows[-1]
    fw = FRAMEWORK.search(text)
    return dict(
        secs=[float(r[1]) for r in rows],
        loss=float(last[3]), accuracy=float(last[4]),
        val_loss=float(last[5]), val_accuracy=float(last[6]),
        label=f"{fw.group(1)} {fw.group(2)}" if fw else name,
    )


results = {}
for name, read in (("mnist-mlp", ours), ("pytorch", anchor), ("keras", anchor)):
    if status(name) != "ok":
        print(f"{name}: {status(name)}", file=sys.stderr)
        continue
    try:
        results[name] = read() if name == "mnist-mlp" else read(name)
    except (OSError, ValueError, KeyError) as e:
        print(f"{name}: no results ({e})", file=sys.stderr)
        continue
    results[name]["rss"] = peak_rss_mb(name)
    results[name]["cpu"] = cpu_over_wall(name)

torch_median = statistics.median(results["pytorch"]["secs"]) if "pytorch" in results else None
print(f"batch {batch}, {epochs} epochs, epoch = train + validation, seconds")
print()
print("| system | epoch times (s) | median (s) | vs PyTorch | loss | accuracy | val_loss | val_accuracy | peak RSS | CPU/wall |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, r in results.items():
    median = statistics.median(r["secs"])
    ratio = f"{median / torch_median:.2f}×" if torch_median else "—"
    rss = f"{r['rss']:.0f} MB" if r["rss"] is not None else "—"
    times = " ".join(f"{s:.2f}" for s in r["secs"])
    print(f"| {r['label']} | {times} | {median:.2f} | {ratio} | {r['loss']:.4f} | {r['accuracy']:.4f} "
          f"| {r['val_loss']:.4f} | {r['val_accuracy']:.4f} | {rss} | "
          + (f"{r['cpu']:.2f} |" if r["cpu"] is not None else "— |"))
