#!/usr/bin/env python3
"""Checks a model written by `mnist-mlp export RUN --format onnx --out MODEL.onnx` against
`mnist-mlp eval` of the same weights: ONNX's checker must accept the file, and ONNX Runtime,
scoring the MNIST test images with it, must give eval's accuracy to the last digit (the same
images right) and eval's probabilities within 1e-5 on every image.

    mnist-mlp eval RUN [--checkpoint N] --json --probabilities PROBS.csv > EVAL.json
    python3 scripts/check_onnx.py MODEL.onnx EVAL.json PROBS.csv [MNIST_DIR]

MNIST_DIR holds the IDX files (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, raw or .gz);
by default the cache mnist-mlp fills (~/.cache/mnist-mlp/mnist). eval scores the images the run
was validated on: all 10,000 unless the run was trained with --limit-valid. Needs the packages
onnx, onnxruntime and numpy (scripts/test-onnx.sh installs pinned versions in a venv). Prints
what it compared; exits 1 on any difference.
"""

import gzip
import json
import os
import struct
import sys
from pathlib import Path

TOLERANCE = 1e-5


def read_idx(directory, name):
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            raw = candidate.read_bytes()
            return gzip.decompress(raw) if candidate.suffix == ".gz" else raw
    sys.exit(f"{directory / name}: missing (give the MNIST directory as the fourth argument)")


def shape_of(value_info):
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in dims]


def check_graph(onnx, path, evaluation):
    """The checker's verdict (with shape inference), the interface and the metadata."""
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    inputs = [(i.name, shape_of(i)) for i in model.graph.input]
    outputs = [(o.name, shape_of(o)) for o in model.graph.output]
    expected_in = [("pixels", ["N", 784])]
    expected_out = [("probabilities", ["N", 10]), ("logits", ["N", 10])]
    if inputs != expected_in or outputs != expected_out:
        sys.exit(f"{path}: inputs {inputs}, outputs {outputs}; expected {expected_in}, {expected_out}")
    metadata = {p.key: p.value for p in model.metadata_props}
    for key in ("run", "epoch"):
        if metadata.get(key) != str(evaluation[key]):
            sys.exit(f"{path}: metadata {key} is {metadata.get(key)!r}, eval scored {evaluation[key]!r}")
    ops = " ".join(n.op_type for n in model.graph.node)
    return model, metadata, ops


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    import numpy as np
    import onnx
    import onnxruntime as ort

    model_path, eval_path, probs_path = sys.argv[1:4]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mnist-mlp" / "mnist"
    mnist = Path(sys.argv[4]) if len(sys.argv) == 5 else cache
    evaluation = json.loads(Path(eval_path).read_text())
    model, metadata, ops = check_graph(onnx, model_path, evaluation)

    images = read_idx(mnist, "t10k-images-idx3-ubyte")
    labels = read_idx(mnist, "t10k-labels-idx1-ubyte")
    count = evaluation["images"]
    # The batcher's pixels: each byte divided by 255 in f32.
    x = np.frombuffer(images, dtype=np.uint8, offset=16).reshape(-1, 784)[:count]
    x = x.astype(np.float32) / np.float32(255)
    y = np.frombuffer(labels, dtype=np.uint8, offset=8)[:count]

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    probabilities, logits = session.run(["probabilities", "logits"], {"pixels": x})
    # The batch dimension is free: 7 images at once give the same rows.
    small = session.run(["probabilities"], {"pixels": x[:7]})[0]
    if not np.allclose(small, probabilities[:7], rtol=0, atol=TOLERANCE):
        sys.exit(f"{model_path}: a batch of 7 gives other probabilities than the batch of {count}")

    reference = np.loadtxt(probs_path, delimiter=",", skiprows=1, dtype=np.float64)
    if reference.shape != (count, 11) or not (reference[:, 0] == np.arange(count)).all():
        sys.exit(f"{probs_path}: expected {count} rows of index,p0,…,p9 (eval scored {count} images)")
    reference = reference[:, 1:]

    predicted = probabilities.argmax(axis=1)
    correct = int((predicted == y).sum())
    accuracy = correct / count
    diff = np.abs(probabilities.astype(np.float64) - reference)
    worst = float(diff.max())
    disagree = int((predicted != reference.argmax(axis=1)).sum())
    softmax_of_logits = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax_of_logits /= softmax_of_logits.sum(axis=1, keepdims=True)

    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    print(
        f"{model_path}: checker ok; opset {model.opset_import[0].version}, IR {model.ir_version}; "
        f"nodes {ops}; run {metadata.get('run')}, epoch {metadata.get('epoch')}, "
        f"val_accuracy {metadata.get('val_accuracy')}"
    )
    print(f"onnxruntime: {count} test images, accuracy {accuracy:.4f} ({correct} correct)")
    print(f"eval:        {count} test images, accuracy {evaluation['accuracy']:.4f} ({evaluation['correct']} correct)")
    print(
        f"probabilities: max |onnxruntime - eval| {worst:.3g} over {diff.size} values "
        f"(tolerance {TOLERANCE:g}); predictions that differ: {disagree}"
    )
    faults = []
    if correct != evaluation["correct"] or f"{accuracy:.4f}" != f"{evaluation['accuracy']:.4f}":
        faults.append("the accuracy differs")
    if worst > TOLERANCE:
        faults.append(f"probabilities differ by {worst:.3g} > {TOLERANCE:g}")
    if float(np.abs(softmax_of_logits - probabilities).max()) > TOLERANCE:
        faults.append("probabilities is not the softmax of logits")
    if faults:
        sys.exit(f"{model_path}: FAILED: {'; '.join(faults)}")
    print("OK")


if __name__ == "__main__":
    main()
