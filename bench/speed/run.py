#!/usr/bin/env python3
"""Speed and memory benchmark: the AMDM Multi-Model Sampler against stock KSampler, side by side.

Run from the repository root with the venv python (see bench/README_speed.md):

    python bench/speed/run.py --quick|--full [--device cpu|cuda] [--model tiny|sd15|sd3] [--out DIR]

Everything is measured in ONE process, variants interleaved, and reported as ratios:

1. overhead   K members, N steps, window end e (window in steps 1..e, so the helpers run steps
              0..e): the Multi-Model Sampler node does N + (K-1)(e+1) UNet evaluations. It is timed
              against stock KSampler runs doing the same evaluations:
                "separate": K stock KSampler runs, the base with N steps and every helper with e+1
                            steps -- the same models, each evaluated as often as inside the MMS
                            (primary ratio: what the AMDM machinery adds to the same work);
                "single":   ONE stock KSampler run of N + (K-1)(e+1) steps on the base (strict
                            ratio: one set-up, one model, no switching).
              Variants run in rotating order in every repeat; ratio = median over repeats of the
              per-repeat ratio. Also a window-free run (every helper weight 0) against one stock
              KSampler of N steps on the base, which should be ~1.
2. math       the core's aggregation step, per aggregated step (what amdm_core.amdm_sample does after
              the members' steps: VP units, spherical_aggregate, the norm-ratio trace, the base's
              deviation_step, back to k-space), checked bit-identical to amdm_sample's own step on the
              same states before it is timed; spherical and slerp, K = 2..8, at latents 4x64x64 and
              4x128x128 (batch 1), against one forward of the UNet at that size (batch 1).
3. memory     peak memory of an MMS run against the members' weights (sum of patcher.model_size()):
              CPU: peak RSS (VmHWM after clear_refs, with glibc's mmap threshold fixed so freed
              blocks go back to the OS) above the RSS before the run, the weights being resident;
              CUDA: torch.cuda.max_memory_allocated of a run that starts with every model unloaded.
4. scaling    with K = 2..8 (window end e fixed) and with the window (e = 1, 3, 7, 15 of N = 20).

Outputs in --out (default bench/results/speed/<device>[-quick]/): results.json (command, git
commit, device, torch and ComfyUI versions, every raw time), table.md, overhead_vs_K.png,
overhead_vs_window.png. `--replot DIR` rebuilds table.md and the plots from DIR/results.json.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the benchmark's modules first; the repo root (for devtools) only at the end, where its nodes/ can
# never shadow ComfyUI's nodes.py (devtools.host puts ComfyUI at sys.path[0])
sys.path.insert(1, str(HERE))
if str(HERE.parents[1]) not in sys.path:
    sys.path.append(str(HERE.parents[1]))
import report  # noqa: E402
from aggregation_math import measure_math  # noqa: E402
from cli import LATENT_CHANNELS_BY_MODEL, Settings, parse_args, settings_from_args  # noqa: E402
from host_setup import Host, build_members  # noqa: E402
from overhead import CFG, SAMPLER, SCHEDULER, SEED, Bench, measure_config  # noqa: E402
from peak_memory import measure_memory  # noqa: E402
from provenance import command_line, device_info, git_info  # noqa: E402

SCHEMA = 1

log = logging.getLogger("amdm.bench")


# ------------------------------------------------------------------------------------------------
# set-up: members, warm-up, repeats
# ------------------------------------------------------------------------------------------------
def build_timed_members(host: Host, s: Settings):
    """(the members, the seconds building them took)"""
    t0 = time.perf_counter()
    members = build_members(host, s.model, s.k_max)
    build_s = time.perf_counter() - t0
    m0 = members[0].patcher
    log.info("%d %s members built in %.1f s (%.1f MB each, %s)", s.k_max, s.model, build_s, m0.model_size() / 1e6,
             m0.model_dtype())
    return members, build_s


@dataclass
class WarmUp:
    results: dict
    seconds: float
    seconds_per_evaluation: float


def warm_up(bench: Bench, s: Settings) -> WarmUp:
    """Every variant once: every member loaded (on a GPU they stay resident), kernels chosen, caches
    filled; then everything alive goes to gc's permanent generation, so that a full gc.collect()
    before each timed run takes milliseconds instead of ~0.6 s."""
    t0 = time.perf_counter()
    warm_steps = min(s.steps, 3)
    warm = {name: fn() for name, fn in bench.variants(s.k_max, warm_steps, 1).items()}
    warm_s = time.perf_counter() - t0
    gc.collect()
    gc.freeze()
    t_eval = warm_s / (3 * (warm_steps + (s.k_max - 1) * 2))
    log.info("warm-up %.1f s, about %.3f s per evaluation (K=%d, latent %dx%d)", warm_s, t_eval, s.k_max, s.side,
             s.side)
    return WarmUp(warm, warm_s, t_eval)


def evaluations_per_repeat(s: Settings) -> int:
    """UNet evaluations of one repeat of the overhead phases (3 variants; the window-free run 2)."""
    steps, e0, window_k = s.steps, s.window_end, s.window_k
    plan_k = [] if "overhead" in s.skip else s.cfg["ks"]
    plan_w = [] if "window" in s.skip else [e for e in s.cfg["window_ends"] if not (window_k in plan_k and e == e0)]
    evals = sum(3 * (steps + (k - 1) * (e0 + 1)) for k in plan_k)
    evals += sum(3 * (steps + (window_k - 1) * (e + 1)) for e in plan_w)
    return evals + (0 if "free" in s.skip else 2 * steps)


def plan_repeats(s: Settings, t_eval: float, elapsed: float) -> int:
    """Repeats per configuration, shrunk (to the mode's minimum) so the overhead phases fit the budget."""
    evals = evaluations_per_repeat(s)
    repeats, budget = s.cfg["repeats"], s.cfg["time_budget"]
    if budget and evals:
        fit = int(0.6 * (budget - elapsed) / (evals * t_eval))
        repeats = max(s.cfg["min_repeats"], min(repeats, fit))
    log.info("overhead: %d repeats of %d evaluations per repeat (estimated %.0f s)", repeats, evals,
             repeats * evals * t_eval)
    return repeats


# ------------------------------------------------------------------------------------------------
# results.json
# ------------------------------------------------------------------------------------------------
def load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def run_settings(s: Settings, repeats: int) -> dict:
    cfg = s.cfg
    return {"steps": s.steps, "ks": cfg["ks"], "window_end": s.window_end, "window_k": s.window_k,
            "window_ends": cfg["window_ends"], "free_k": cfg["free_k"], "latent": [1, LATENT_CHANNELS_BY_MODEL[s.model], s.side, s.side],
            "cfg": CFG, "sampler": SAMPLER, "scheduler": SCHEDULER, "seed": SEED, "repeats": repeats,
            "repeats_requested": cfg["repeats"], "time_budget": cfg["time_budget"], "math_sizes": cfg["math_sizes"],
            "math_ks": cfg["math_ks"], "memory_ks": cfg["memory_ks"], "skipped": sorted(s.skip),
            "aggregation": "spherical, window_unit steps 0..e (aggregates steps 1..e), independent noise",
            "deviation": "faithful preset (step 0.35, absolute, base member)",
            "weights": "base 1.0, helpers 1.0 (normalised to sum of squares 1)",
            "progress_bars": "off (comfy.utils.PROGRESS_BAR_ENABLED = False) in every variant"}


def model_record(s: Settings, members, build_s: float) -> dict:
    m0 = members[0].patcher
    return {"kind": s.model, "parameters": sum(p.numel() for p in m0.model.diffusion_model.parameters()),
            "dtype": str(m0.model_dtype()), "weight_bytes_per_member": m0.model_size(),
            "build_seconds": build_s, "detected_as": type(m0.model.model_config).__name__}


def clock_record(host: Host) -> dict:
    return {"name": host.clock_name,
            "meaning": "process CPU time (time.process_time; torch on one thread)" if host.clock_name == "cpu"
            else "wall time (time.perf_counter, CUDA synchronised)"}


def new_results(argv, s: Settings, host: Host, model: dict, warm: WarmUp, repeats: int, load_start) -> dict:
    """results.json before any measurement: provenance, settings, warm-up; the phases fill in the rest."""
    return {
        "schema": SCHEMA,
        "command": command_line(argv),
        "wrapper": os.environ.get("AMDM_BENCH_WRAPPER"),
        "python_executable": sys.executable,
        "git": git_info(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": s.mode,
        "device": device_info(host),
        "torch": host.torch.__version__,
        "comfyui": host.comfyui_version,
        "python": platform.python_version(),
        "load_average_1min": {"start": load_start, "end": None},
        "model": model,
        "clock": clock_record(host),
        "settings": run_settings(s, repeats),
        "warmup": {"seconds": warm.seconds, "seconds_per_evaluation": warm.seconds_per_evaluation,
                   "finite": {k: v["finite"] for k, v in warm.results.items()},
                   "unet_calls": {k: v["unet_calls"] for k, v in warm.results.items()}},
        "overhead": [],
        "math": [],
        "memory": [],
        "memory_method": None,
        "complete": False,
        "elapsed_seconds": None,
    }


@dataclass
class ResultsFile:
    """results.json in the output folder, rewritten after every configuration: a run cut short keeps
    what it measured."""
    out: Path
    t_start: float
    results: dict = field(default_factory=dict)

    def save(self):
        self.results["elapsed_seconds"] = time.perf_counter() - self.t_start
        if hasattr(os, "getloadavg"):
            self.results["load_average_1min"]["end"] = os.getloadavg()[0]
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------
# the phases
# ------------------------------------------------------------------------------------------------
def run_k_sweep(bench: Bench, s: Settings, repeats: int, deadline, rf: ResultsFile):
    for k in s.cfg["ks"]:
        rf.results["overhead"].append(measure_config(bench, "K", k, s.steps, s.window_end, repeats,
                                                     deadline=deadline))
        rf.save()


def run_window_sweep(bench: Bench, s: Settings, repeats: int, deadline, rf: ResultsFile):
    """K = window_k over the window ends; a configuration the K sweep measured already is reused."""
    overhead = rf.results["overhead"]
    for e in s.cfg["window_ends"]:
        same = next((o for o in overhead if o["K"] == s.window_k and o["window_end"] == e), None)
        if same is not None:
            overhead.append(dict(same, group="window"))
        else:
            overhead.append(measure_config(bench, "window", s.window_k, s.steps, e, repeats, deadline=deadline))
        rf.save()


def run_window_free(bench: Bench, s: Settings, repeats: int, deadline, rf: ResultsFile):
    rf.results["overhead"].append(measure_config(bench, "free", s.cfg["free_k"], s.steps, s.window_end, repeats,
                                                 free=True, deadline=deadline))
    rf.save()


def run_phases(host: Host, bench: Bench, s: Settings, repeats: int, rf: ResultsFile):
    budget = s.cfg["time_budget"]
    deadline = rf.t_start + 0.75 * budget if budget else None
    if "overhead" not in s.skip:
        run_k_sweep(bench, s, repeats, deadline, rf)
    if "window" not in s.skip:
        run_window_sweep(bench, s, repeats, deadline, rf)
    if "free" not in s.skip:
        run_window_free(bench, s, repeats, deadline, rf)
    if "math" not in s.skip:
        for side in s.cfg["math_sizes"]:
            rf.results["math"].append(measure_math(host, bench.members[0], side, s.cfg))
            rf.save()
    if "memory" not in s.skip:
        rf.results["memory"], rf.results["memory_method"] = measure_memory(host, bench, s.cfg["memory_ks"], s.steps,
                                                                           s.window_end)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def replot(folder: Path) -> int:
    results = json.loads((folder / "results.json").read_text())
    written = report.write_all(results, folder)
    log.info("rewrote %s in %s from its results.json", ", ".join(written), folder)
    return 0


def finish(rf: ResultsFile) -> int:
    rf.results["complete"] = True
    rf.save()
    written = report.write_all(rf.results, rf.out)
    log.info("%s", report.summary_lines(rf.results))
    log.info("wrote %s in %s (%.0f s)", ", ".join(written + ["results.json"]), rf.out, rf.results["elapsed_seconds"])
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    if ns.replot is not None:
        return replot(ns.replot)
    t_start = time.perf_counter()
    s = settings_from_args(ns)
    s.out.mkdir(parents=True, exist_ok=True)
    load_start = load_average()
    host = Host(s.device, s.threads)
    log.info("ComfyUI %s at %s, torch %s, device %s", host.comfyui_version, host.comfyui_path,
             host.torch.__version__, host.device)
    members, build_s = build_timed_members(host, s)
    bench = Bench(host, members, s.side, s.steps)
    warm = warm_up(bench, s)
    repeats = plan_repeats(s, warm.seconds_per_evaluation, time.perf_counter() - t_start)
    rf = ResultsFile(s.out, t_start, new_results(argv, s, host, model_record(s, members, build_s), warm, repeats,
                                                 load_start))
    rf.save()
    run_phases(host, bench, s, repeats, rf)
    return finish(rf)


if __name__ == "__main__":
    sys.exit(main())
