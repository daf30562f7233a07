#!/usr/bin/env python3
"""Loads weights written by `mnist-mlp export RUN --format safetensors --out FILE` into the
PyTorch model of the Keras tutorial and scores the 10,000 MNIST test images with it.

    python3 scripts/check_export.py FILE [MNIST_DIR]

MNIST_DIR holds the IDX files (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or .gz);
by default the cache mnist-mlp fills (~/.cache/mnist-mlp/mnist). Prints the accuracy, which
must equal `mnist-mlp eval RUN` for the same weights. Needs torch; without it, says so and
exits 0 (nothing checked). The safetensors file is read with the standard library, so the
`safetensors` package is not needed.
"""

import gzip
import json
import os
import struct
import sys
from pathlib import Path


def read_safetensors(path):
    """name -> (dtype, shape, bytes), as the format's spec lays a file out: an 8-byte little-endian
    header length, a JSON header, then the tensors' bytes."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], body[start:end])
    return tensors


def read_idx(directory, name):
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if candidate.suffix == ".gz" else raw
    sys.exit(f"{directory / name}: missing (give the MNIST directory as the second argument)")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    try:
        import torch
    except ImportError:
        print("skipped: torch is not installed (pip install torch), nothing checked")
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mnist-mlp" / "mnist"
    mnist = Path(sys.argv[2]) if len(sys.argv) == 3 else cache

    tensors = read_safetensors(sys.argv[1])
    state = {}
    for name, (dtype, shape, raw) in tensors.items():
        if dtype != "F32":
            sys.exit(f"{sys.argv[1]}: {name} is {dtype}, expected F32")
        state[name] = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)

    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )
    # strict: every name and shape must match, none missing, none extra.
    model.load_state_dict(state, strict=True)
    model.eval()

    images = read_idx(mnist, "t10k-images-idx3-ubyte")
    labels = read_idx(mnist, "t10k-labels-idx1-ubyte")
    count = struct.unpack(">I", labels[4:8])[0]
    x = torch.frombuffer(bytearray(images[16:]), dtype=torch.uint8).reshape(count, 784)
    x = x.to(torch.float32) / 255.0
    y = torch.frombuffer(bytearray(labels[8:]), dtype=torch.uint8).to(torch.int64)
    with torch.no_grad():
        logits = model(x)
    correct = int((logits.argmax(dim=1) == y).sum())
    loss = float(torch.nn.functional.cross_entropy(logits, y))
    print(f"torch {torch.__version__}: {count} test images, loss {loss:.4f} - accuracy {correct / count:.4f} ({correct} correct)")


if __name__ == "__main__":
    main()
