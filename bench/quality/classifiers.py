"""Independent aspect classifiers (class, position, style), one small CNN each.

They are trained on the "clf_train" split (digits the diffusion models never saw) and their
accuracy is measured on the "clf_test" split; see data.py. Light augmentation (Gaussian pixel
noise of a random strength up to 0.15) makes them tolerant of the imperfect canvases a tiny
diffusion model draws; they are never trained on generated samples. Deterministic for the seed
(one CPU thread).

  .cache/venv/bin/python -m bench.quality.classifiers --out bench/quality/weights      # ~1 CPU minute
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import ASPECTS, N_VALUES, PROVENANCE, CanvasSet

SEED = 1234


class AspectCNN(nn.Module):
    def __init__(self, n_out: int, global_pool: bool, width: int = 24):
        super().__init__()
        w = width
        self.global_pool = global_pool
        self.c1 = nn.Conv2d(1, w, 3, padding=1)
        self.c2 = nn.Conv2d(w, 2 * w, 3, padding=1, stride=2)
        self.c3 = nn.Conv2d(2 * w, 2 * w, 3, padding=1)
        self.head = nn.Linear(4 * w if global_pool else 2 * w * 64, n_out)
        self.config = {"n_out": n_out, "global_pool": global_pool, "width": width}

    def forward(self, x):
        h = F.silu(self.c1(x))
        h = F.silu(self.c2(h))
        h = F.silu(self.c3(h))
        if self.global_pool:
            h = torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1)
        else:
            h = h.flatten(1)
        return self.head(h)


ITERS = {"class": 800, "position": 200, "style": 200}

# class: position-invariant (global pooling); position: spatial head; style: texture, pooled
ARCH = {"class": True, "position": False, "style": True}


def make(aspect: str) -> AspectCNN:
    return AspectCNN(N_VALUES[aspect], ARCH[aspect])


def train_one(aspect: str, train: CanvasSet, iters: int, seed: int, batch: int = 128):
    torch.manual_seed(seed)
    net = make(aspect)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(seed)
    col = ASPECTS.index(aspect)
    for it in range(iters):
        idx = torch.randint(0, len(train), (batch,), generator=g)
        x = train.x[idx]
        x = x + 0.15 * torch.rand(batch, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
        loss = F.cross_entropy(net(x), train.labels[idx, col])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net, data: CanvasSet, aspect: str) -> float:
    pred = net(data.x).argmax(1)
    return float((pred == data.labels[:, ASPECTS.index(aspect)]).float().mean())


class Classifiers:
    """The three aspect classifiers; __call__(x) -> {aspect: (pred [B], confidence [B])}."""

    def __init__(self, nets: dict):
        self.nets = nets

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict:
        out = {}
        for aspect, net in self.nets.items():
            p = F.softmax(net(x.float()), dim=1)
            conf, pred = p.max(1)
            out[aspect] = (pred, conf)
        return out

    @classmethod
    def load(cls, weights_dir: Path) -> "Classifiers":
        from safetensors.torch import load_file
        nets = {}
        for aspect in ASPECTS:
            net = make(aspect)
            net.load_state_dict(load_file(str(Path(weights_dir) / f"clf_{aspect}.safetensors")))
            nets[aspect] = net.eval()
        return cls(nets)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/quality/weights")
    ap.add_argument("--iters", type=int, default=None, help="iterations for every aspect (default: ITERS)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from safetensors.torch import save_file
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = CanvasSet("clf_train"), CanvasSet("clf_test")
    report = {"command": "python -m bench.quality.classifiers " + " ".join(argv if argv is not None else sys.argv[1:]),
              "data": PROVENANCE, "train_split": "clf_train", "test_split": "clf_test",
              "n_train": len(train), "n_test": len(test),
              "iters": {a: args.iters or ITERS[a] for a in ASPECTS}, "seed": args.seed, "accuracy": {}}
    for i, aspect in enumerate(ASPECTS):
        t0 = time.perf_counter()
        net = train_one(aspect, train, args.iters or ITERS[aspect], args.seed + i)
        acc = accuracy(net, test, aspect)
        report["accuracy"][aspect] = round(acc, 4)
        print(f"{aspect}: held-out accuracy {acc:.4f} ({time.perf_counter() - t0:.1f} s)", flush=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"clf_{aspect}.safetensors"))
    (out / "classifiers.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
