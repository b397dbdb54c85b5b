"""Train the toy model ecosystem: one unconditional base, then three finetunes that each control
one aspect (A: class, B: position, C: style). Deterministic for a seed on CPU (one thread).

  .cache/venv/bin/python -m bench.quality.train --out bench/quality/weights

Noise levels come from ComfyUI's own SD discrete schedule (ModelSamplingDiscrete, scaled_linear
betas, 1000 steps): t ~ U{0..999}, sigma = sigmas[t], x = x0 + sigma * eps (k-space), network
input x / sqrt(sigma^2 + 1) (EPS.calculate_input), timestep t, target eps. Classifier-free
dropout: the condition is zeroed with probability p_uncond. Weights are the EMA of the training
weights, saved as safetensors with a provenance JSON (data, seed, command, steps, losses, time).
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .comfy_env import model_sampling
from .data import ASPECTS, HOME_P, PROVENANCE, CanvasSet, training_weights
from .models import COND_DIM, COND_SLICES, MODEL_ASPECT, TinyEpsNet, n_params

SEED = 20241002


def cond_batch(labels: torch.Tensor, aspect: str | None, p_uncond: float, g: torch.Generator) -> torch.Tensor:
    b = labels.shape[0]
    c = torch.zeros(b, 1, COND_DIM)
    if aspect is None:
        return c
    lo, _ = COND_SLICES[aspect]
    keep = torch.rand(b, generator=g) >= p_uncond
    rows = torch.arange(b)[keep]
    c[rows, 0, lo + labels[keep, ASPECTS.index(aspect)]] = 1.0
    return c


def train_stage(net, data: CanvasSet, sigmas: torch.Tensor, aspect: str | None, *, iters: int, seed: int,
                batch: int, lr: float, p_uncond: float, ema_decay: float, log_every: int = 100, name: str = ""):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr)
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    losses, running = [], 0.0
    weights = training_weights(data)
    t0 = time.perf_counter()
    for it in range(1, iters + 1):
        idx = torch.multinomial(weights, batch, replacement=True, generator=g)
        x0 = data.x[idx]
        t = torch.randint(0, len(sigmas), (batch,), generator=g)
        sigma = sigmas[t].view(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=g)
        x = x0 + sigma * eps
        inp = x / (sigma ** 2 + 1.0).sqrt()
        ctx = cond_batch(data.labels[idx], aspect, p_uncond, g)
        lr_now = lr * min(1.0, it / 100)                    # short warm-up
        for pg in opt.param_groups:
            pg["lr"] = lr_now
        loss = F.mse_loss(net(inp, t.float(), context=ctx), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + it) / (10 + it))
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(p, alpha=1 - d)
        running += loss.item()
        if it % log_every == 0:
            losses.append(round(running / log_every, 5))
            print(f"[{name}] it {it}/{iters} loss {running / log_every:.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
            running = 0.0
    return net, ema, losses, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/quality/weights")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--base-iters", type=int, default=1500)
    ap.add_argument("--finetune-iters", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--p-uncond", type=float, default=0.2)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--width", type=int, default=24)
    ap.add_argument("--models", default="ABC", help="which finetunes to train (default ABC)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    from safetensors.torch import save_file

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sigmas = model_sampling().sigmas.float()
    data = CanvasSet("diffusion")
    torch.manual_seed(args.seed)
    net = TinyEpsNet(args.width)
    common = dict(batch=args.batch, lr=args.lr, p_uncond=args.p_uncond, ema_decay=args.ema)
    prov = {
        "command": "python -m bench.quality.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": PROVENANCE, "split": "diffusion", "n_canvases": len(data),
        "bias": f"class c drawn in quadrant c % 4 with p = {HOME_P}, other quadrants equally; style uniform",
        "schedule": "ComfyUI ModelSamplingDiscrete (SD scaled_linear betas 0.00085..0.012, 1000 steps), EPS",
        "architecture": {"class": "TinyEpsNet", **net.config, "n_params": n_params(net)},
        "seed": args.seed, "torch": torch.__version__, "python": platform.python_version(),
        "scikit_learn": _sklearn_version(),
        "hyper": vars(args), "stages": {},
    }
    _, base_ema, losses, secs = train_stage(net, data, sigmas, None, iters=args.base_iters, seed=args.seed,
                                            name="base", **common)
    save_file({k: v.contiguous() for k, v in base_ema.state_dict().items()}, str(out / "base.safetensors"))
    prov["stages"]["base"] = {"aspect": None, "iters": args.base_iters, "init": "random (seed)",
                              "loss_every_100": losses, "seconds": round(secs, 1)}
    for i, name in enumerate(args.models):
        aspect = MODEL_ASPECT[name]
        ft = copy.deepcopy(base_ema).train()
        for p in ft.parameters():
            p.requires_grad_(True)
        _, ema, losses, secs = train_stage(ft, data, sigmas, aspect, iters=args.finetune_iters,
                                           seed=args.seed + 1 + i, name=name, **common)
        save_file({k: v.contiguous() for k, v in ema.state_dict().items()}, str(out / f"model_{name}.safetensors"))
        prov["stages"][name] = {"aspect": aspect, "iters": args.finetune_iters, "init": "base EMA",
                                "loss_every_100": losses, "seconds": round(secs, 1)}
        (out / "provenance.json").write_text(json.dumps(prov, indent=1) + "\n")
    (out / "provenance.json").write_text(json.dumps(prov, indent=1) + "\n")


def _sklearn_version():
    import sklearn
    return sklearn.__version__


if __name__ == "__main__":
    main()
