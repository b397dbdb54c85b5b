"""The speed benchmark's command line: the two modes' presets, the options, and the Settings of a run."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from host_setup import REPO_ROOT

DESCRIPTION = "Speed and memory benchmark: the AMDM Multi-Model Sampler against stock KSampler, side by side."
RESULTS_ROOT = REPO_ROOT / "bench" / "results" / "speed"

# Mode presets (the overhead and memory runs' latent side is per model: LATENT_BY_MODEL). Quick mode
# exercises every code path in well under a minute on 2 CPU cores.
MODES = {
    "quick": dict(steps=3, ks=[2, 3], window_end=1, window_k=2, window_ends=[1, 2], free_k=2,
                  repeats=1, min_repeats=1, math_sizes=[64], math_ks=[2, 3], math_outer=3,
                  forward_warmup=0, forward_reps=1, memory_ks=[2], time_budget=0.0),
    "full": dict(steps=20, ks=[2, 3, 4, 5, 6, 7, 8], window_end=3, window_k=4, window_ends=[1, 3, 7, 15],
                 free_k=8, repeats=5, min_repeats=3, math_sizes=[64, 128], math_ks=[2, 3, 4, 5, 6, 7, 8],
                 math_outer=7, forward_warmup=1, forward_reps=2, memory_ks=[2, 4, 8], time_budget=0.0),
}
LATENT_BY_MODEL = {"tiny": 8, "sd15": 64, "sd3": 8}   # tiny on CPU: 8x8 latents keep the full run at ~20 min
LATENT_CHANNELS_BY_MODEL = {"tiny": 4, "sd15": 4, "sd3": 16}
MAX_SIDE_BY_MODEL = {"sd3": 16}   # the tiny MMDiT's position table covers latents up to 16 x 16
# the options that override the mode's setting of the same name
LIST_OVERRIDES = ("ks", "window_ends", "memory_ks", "math_sizes")      # "2,3"
NUMBER_OVERRIDES = ("steps", "window_k", "free_k")


def parse_args(argv):
    p = argparse.ArgumentParser(description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="every measurement at its smallest (tiny models; < 1 min on 2 CPU cores); "
                           "the test suite runs it")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="K = 2..8, windows 1/3/7/15 of 20 steps, 4x64x64 and 4x128x128, repeats")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", choices=["tiny", "sd15", "sd3"], default=None,
                   help="tiny: the test suite's 13.6 M-parameter SD1.5-format UNet; sd15: full-size SD1.5 UNet, "
                        "random weights; sd3: the flow family, the test suite's tiny SD3-type MMDiT (16-channel latents) "
                        "(default: tiny on cpu, sd15 on cuda)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default bench/results/speed/<device>[-quick])")
    p.add_argument("--latent", type=int, default=None, help="latent side for the overhead and memory runs "
                                                            "(default 8 for tiny, 64 for sd15)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per overhead configuration")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 1 on cpu)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds for the whole run; repeats shrink (to the mode's minimum) to fit. 0 = none")
    p.add_argument("--ks", default=None, help="override K values, e.g. 2,3")
    p.add_argument("--window-ends", default=None, help="override window ends, e.g. 1,3")
    p.add_argument("--steps", type=int, default=None, help="override N")
    p.add_argument("--window-k", type=int, default=None, help="override K of the window sweep")
    p.add_argument("--free-k", type=int, default=None, help="override K of the window-free run")
    p.add_argument("--memory-ks", default=None, help="override K values of the memory runs, e.g. 2,8")
    p.add_argument("--math-sizes", default=None, help="override math latent sides, e.g. 64,128")
    p.add_argument("--skip", default="", help="comma list of phases to skip: overhead,window,free,math,memory")
    p.add_argument("--replot", type=Path, default=None, metavar="DIR",
                   help="rebuild table.md and plots from DIR/results.json")
    ns = p.parse_args(argv)
    if ns.replot is None and ns.mode is None:
        p.error("one of --quick or --full is required")
    return ns


def _ints(s):
    return [int(v) for v in s.split(",") if v.strip()]


@dataclass
class Settings:
    """What to run, from the mode and the command line."""
    mode: str
    device: str
    model: str
    side: int
    cfg: dict
    skip: set
    threads: int | None
    out: Path

    @property
    def steps(self) -> int:
        return self.cfg["steps"]

    @property
    def window_end(self) -> int:
        return self.cfg["window_end"]

    @property
    def window_k(self) -> int:
        return self.cfg["window_k"] if "window" not in self.skip else 2

    @property
    def k_max(self) -> int:
        return max(self.cfg["ks"] + [self.window_k, self.cfg["free_k"], *self.cfg["memory_ks"]])


def mode_settings(ns) -> dict:
    """The mode's preset with the command line's overrides."""
    cfg = dict(MODES[ns.mode])
    for name in LIST_OVERRIDES:
        if getattr(ns, name):
            cfg[name] = _ints(getattr(ns, name))
    for name in NUMBER_OVERRIDES:
        if getattr(ns, name):
            cfg[name] = getattr(ns, name)
    if ns.repeats:
        cfg["repeats"] = ns.repeats
        cfg["min_repeats"] = min(cfg["min_repeats"], ns.repeats)
    if ns.time_budget is not None:
        cfg["time_budget"] = ns.time_budget
    return cfg


def settings_from_args(ns) -> Settings:
    cfg = mode_settings(ns)
    model = ns.model or ("sd15" if ns.device == "cuda" else "tiny")
    if model in MAX_SIDE_BY_MODEL:
        cfg["math_sizes"] = sorted({min(v, MAX_SIDE_BY_MODEL[model]) for v in cfg["math_sizes"]})
    if any(e > cfg["steps"] - 1 for e in cfg["window_ends"] + [cfg["window_end"]]):
        raise SystemExit(f"window ends must be <= N - 1 = {cfg['steps'] - 1}")
    side = ns.latent or LATENT_BY_MODEL[model]
    if side > MAX_SIDE_BY_MODEL.get(model, side):
        raise SystemExit(f"--latent {side} is larger than the {model} model takes ({MAX_SIDE_BY_MODEL[model]})")
    return Settings(mode=ns.mode, device=ns.device, model=model, side=side, cfg=cfg,
                    skip={s.strip() for s in ns.skip.split(",") if s.strip()},
                    threads=ns.threads or (1 if ns.device == "cpu" else None),
                    out=ns.out or RESULTS_ROOT / (ns.device + ("-quick" if ns.mode == "quick" else "")))
