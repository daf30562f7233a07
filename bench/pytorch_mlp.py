"""PyTorch (CPU) counterpart of the classic Keras MNIST MLP (see keras_mlp.py).

784 -> Linear 512 + ReLU -> Linear 512 + ReLU -> Linear 10 (logits), nn.CrossEntropyLoss on logits.
torch.optim.RMSprop(lr=0.001, alpha=0.9, eps=1e-7), batch 32 shuffled each epoch, 5 epochs,
validation on the 10k test set after each epoch. torch.set_num_threads(2).

Defaults chosen to mirror Keras:
  --init keras  : glorot(xavier)-uniform weights, zero biases (Keras Dense defaults);
                  --init torch keeps nn.Linear's own default init.
  --opt torch   : torch.optim.RMSprop, update lr*g/(sqrt(v)+eps)
  --opt keras   : hand-written Keras-3 RMSprop, update lr*g/sqrt(v+eps) (eps inside the sqrt)
Reported loss/accuracy are epoch averages over the training batches as seen during training
(weighted by batch size), like Keras' fit logs; val_* are computed after the epoch.

Usage: python pytorch_mlp.py [--batch 32] [--epochs 5] [--seed 42] [--init keras|torch] [--opt torch|keras] [--data DIR]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mnist_idx import load_mnist  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


class KerasRMSprop:
    """Keras 3 RMSprop (momentum 0, not centered): v = rho v + (1-rho) g^2; w -= lr g / sqrt(v + eps)."""

    def __init__(self, params, lr=1e-3, rho=0.9, eps=1e-7):
        self.params = [p for p in params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.lr, self.rho, self.eps = lr, rho, eps

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for p, v in zip(self.params, self.v):
            g = p.grad
            v.mul_(self.rho).addcmul_(g, g, value=1 - self.rho)
            p.addcdiv_(g, (v + self.eps).sqrt_(), value=-self.lr)


def evaluate(model, crit, x, y, bs):
    model.eval()
    tot_loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], bs):
            xb, yb = x[i:i + bs], y[i:i + bs]
            logits = model(xb)
            tot_loss += crit(logits, yb).item() * xb.shape[0]
            correct += (logits.argmax(1) == yb).sum().item()
    return tot_loss / x.shape[0], correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", choices=["keras", "torch"], default="keras")
    ap.add_argument("--opt", choices=["torch", "keras"], default="torch")
    ap.add_argument("--data", default=None)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    (x_train, y_train), (x_valid, y_valid) = load_mnist(args.data)
    x_train = torch.from_numpy(x_train.reshape(60000, 784).astype("float32") / 255)
    x_valid = torch.from_numpy(x_valid.reshape(10000, 784).astype("float32") / 255)
    y_train = torch.from_numpy(y_train.astype(np.int64))  # class indices (== argmax of one-hot)
    y_valid = torch.from_numpy(y_valid.astype(np.int64))

    model = nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )
    if args.init == "keras":
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
    print(model)
    print(f"[anchor] params {sum(p.numel() for p in model.parameters())}")

    crit = nn.CrossEntropyLoss()
    if args.opt == "torch":
        opt = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    else:
        opt = KerasRMSprop(model.parameters(), lr=0.001, rho=0.9, eps=1e-7)
    print(f"[anchor] torch {torch.__version__} threads {torch.get_num_threads()} interop {torch.get_num_interop_threads()} "
          f"batch {args.batch} init {args.init} opt {args.opt} ({type(opt).__name__}) seed {args.seed}")

    gen = torch.Generator().manual_seed(args.seed)
    n, bs = x_train.shape[0], args.batch
    rows = []
    t_fit0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            xb, yb = x_train[idx], y_train[idx]
            logits = model(xb)
            loss = crit(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                tot_loss += loss.detach().double() * idx.shape[0]
                correct += (logits.argmax(1) == yb).sum()
        t_train = time.perf_counter()
        val_loss, val_acc = evaluate(model, crit, x_valid, y_valid, bs)
        t1 = time.perf_counter()
        row = dict(epoch=epoch, secs=t1 - t0, train_secs=t_train - t0,
                   loss=tot_loss.item() / n, accuracy=correct.item() / n,
                   val_loss=val_loss, val_accuracy=val_acc)
        rows.append(row)
        print(
            f"[anchor] epoch {epoch}: wall {row['secs']:.2f}s (train {row['train_secs']:.2f}s) "
            f"loss {row['loss']:.4f} accuracy {row['accuracy']:.4f} "
            f"val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f}",
            flush=True,
        )
    fit_s = time.perf_counter() - t_fit0

    secs = [r["secs"] for r in rows]
    train_secs = [r["train_secs"] for r in rows]
    print(f"[anchor] framework torch {torch.__version__} batch {args.batch} seed {args.seed}")
    print(f"[anchor] epoch secs: {' '.join(f'{s:.2f}' for s in secs)}; median {np.median(secs):.2f}; "
          f"median train-only {np.median(train_secs):.2f}")
    print(f"[anchor] total fit seconds {fit_s:.2f}")
    print(f"[anchor] final accuracy {rows[-1]['accuracy']:.4f} "
          f"val_loss {rows[-1]['val_loss']:.4f} val_accuracy {rows[-1]['val_accuracy']:.4f}")


if __name__ == "__main__":
    main()
