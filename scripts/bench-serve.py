#!/usr/bin/env python3
"""Latency of `serve`'s predict API: N requests from C client threads, each a PNG of a drawn 1
(280×280, as the page's pad sends) on a fresh connection, against each binary given, in turn,
in the same invocation (the machine is shared: compare only numbers of one invocation).

    python3 scripts/bench-serve.py --artifact-dir DIR --run NAME \\
        --binary before=/tmp/before/mnist-mlp --binary after=target/release/mnist-mlp

DIR/runs/NAME must be a trained run. Prints one Markdown row per binary and round.
Standard library only.
"""
import argparse
import os
import http.client
import statistics
import struct
import subprocess
import threading
import time
import zlib


def png_of_a_one(side=280):
    """A white `side`² grey PNG with a black vertical stroke: a drawn 1."""
    rows = []
    for y in range(side):
        row = bytearray(b"\xff" * side)
        if side // 5 <= y < side - side // 5:
            for x in range(side // 2 - 10, side // 2 + 10):
                row[x] = 0
        rows.append(b"\x00" + bytes(row))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def start(binary, artifact_dir):
    server = subprocess.Popen(
        [binary, "serve", "--artifact-dir", artifact_dir, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = server.stdout.readline().strip()
    if not first.startswith("Serving http://"):
        server.kill()
        raise SystemExit(f"{binary}: first line {first!r}")
    host, port = first.removeprefix("Serving http://").rstrip("/").rsplit(":", 1)
    return server, host, int(port)


def predict(host, port, path, png):
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request("POST", path, body=png, headers={"Content-Type": "image/png"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return time.perf_counter() - started, response.status, body


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (Linux, /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(binary, artifact_dir, run, requests, clients, png):
    server, host, port = start(binary, artifact_dir)
    path = f"/api/runs/{run}/predict"
    try:
        # Loads the model and warms the caches, outside the measurement.
        for _ in range(20):
            _, status, body = predict(host, port, path, png)
            if status != 200:
                raise SystemExit(f"{binary}: {status} {body[:200]!r}")
        times, failures, lock = [], [], threading.Lock()
        left = iter(range(requests))

        def client():
            while True:
                with lock:
                    if next(left, None) is None:
                        return
                took, status, body = predict(host, port, path, png)
                with lock:
                    (times if status == 200 else failures).append(took)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        cpu = cpu_seconds(server.pid)
        wall = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - wall
        cpu = cpu_seconds(server.pid) - cpu
    finally:
        server.kill()
        server.wait()
    times.sort()
    ms = lambda q: 1000 * times[min(len(times) - 1, int(q * len(times)))]
    return {
        "p50": ms(0.50), "p99": ms(0.99), "mean": 1000 * statistics.mean(times),
        "per_s": len(times) / wall, "failures": len(failures),
        "cpu_ms": 1000 * cpu / requests,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--binary", action="append", required=True, metavar="LABEL=PATH")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2,
                        help="each binary this many times, alternating")
    args = parser.parse_args()
    png = png_of_a_one()
    print(f"{args.requests} predicts (PNG {len(png)} bytes, a connection each), "
          f"{args.clients} clients")
    print("| binary | round | p50 (ms) | p99 (ms) | mean (ms) | requests/s | server CPU per request (ms) | failed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for round in range(1, args.rounds + 1):
        for labelled in args.binary:
            label, binary = labelled.split("=", 1)
            r = measure(binary, args.artifact_dir, args.run, args.requests, args.clients, png)
            print(f"| {label} | {round} | {r['p50']:.1f} | {r['p99']:.1f} | {r['mean']:.1f} "
                  f"| {r['per_s']:.0f} | {r['cpu_ms']:.2f} | {r['failures']} |", flush=True)


if __name__ == "__main__":
    main()
