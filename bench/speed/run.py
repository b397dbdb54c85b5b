#!/usr/bin/env python3
"""Speed and memory benchmark: the AMDM Multi-Model Sampler against stock KSampler, side by side.

Run from the repository root with the venv python (see bench/README_speed.md):

    python bench/speed/run.py --quick|--full [--device cpu|cuda] [--model tiny|sd15] [--out DIR]

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
2. math       the per-aggregated-step math of the pack (to_vp of K states and the base mean,
              spherical_aggregate, the norm-ratio trace, deviation_step, from_vp), spherical and
              slerp, K = 2..8, at latents 4x64x64 and 4x128x128 (batch 1), against one forward of
              the UNet at that size (batch 1).
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

import argparse
import ctypes
import gc
import importlib.util
import json
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
RESULTS_ROOT = REPO_ROOT / "bench" / "results" / "speed"
PACK_MODULE = "amdm_pack"
SCHEMA = 1

sys.path.insert(1, str(HERE))  # report.py; never the repo root (its nodes/ would shadow ComfyUI's nodes.py)
import report  # noqa: E402

log = logging.getLogger("amdm.bench")

# Mode presets. `latent` is the latent side used for the overhead and memory runs (None: per model,
# see LATENT_BY_MODEL). Quick mode exercises every code path in well under a minute on 2 CPU cores.
MODES = {
    "quick": dict(steps=3, ks=[2, 3], window_end=1, window_k=2, window_ends=[1, 2], free_k=2,
                  repeats=1, min_repeats=1, math_sizes=[64], math_ks=[2, 3], math_outer=3,
                  forward_warmup=0, forward_reps=1, memory_ks=[2], time_budget=0.0),
    "full": dict(steps=20, ks=[2, 3, 4, 5, 6, 7, 8], window_end=3, window_k=4, window_ends=[1, 3, 7, 15],
                 free_k=8, repeats=5, min_repeats=3, math_sizes=[64, 128], math_ks=[2, 3, 4, 5, 6, 7, 8],
                 math_outer=7, forward_warmup=1, forward_reps=2, memory_ks=[2, 4, 8], time_budget=0.0),
}
LATENT_BY_MODEL = {"tiny": 8, "sd15": 64}   # tiny on CPU: 8x8 latents keep the full run at ~20 min
CFG = 2.0
SAMPLER, SCHEDULER = "euler", "normal"      # one evaluation per step in stock and in the MMS
SEED = 42
TOKENS, WIDTH = 77, 768

# The full SD1.5 UNet, exactly the SD15 entry of comfy/model_detection.py (unet_config_from_diffusers_unet);
# model_detection reads it back as supported_models.SD15 (checked in build_members).
SD15_UNET_CONFIG = dict(
    use_checkpoint=False, image_size=32, out_channels=4, use_spatial_transformer=True, legacy=False,
    adm_in_channels=None, in_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
    transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], channel_mult=[1, 2, 4, 4], transformer_depth_middle=1,
    use_linear_in_transformer=False, context_dim=768, num_heads=8,
    transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    use_temporal_attention=False, use_temporal_resblock=False,
)
MEMBER_NAMES = "abcdefgh"


# ------------------------------------------------------------------------------------------------
# set-up
# ------------------------------------------------------------------------------------------------
def _load_file_module(name: str, path: Path):
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class Host:
    """Imported ComfyUI modules and the pack (imported as `amdm_pack`, as ComfyUI imports a pack)."""

    def __init__(self, device: str, threads: int | None):
        try:
            self._setup(device, threads)
        except ModuleNotFoundError as e:
            raise SystemExit(f"cannot import {e.name!r} (needed by ComfyUI or the pack): install it, or carry its "
                             f"wheel (bench/speed/prepare_gpu_carry.sh, see bench/README_speed.md)") from e

    def _setup(self, device: str, threads: int | None):
        path = Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()
        if not (path / "nodes.py").is_file() or not (path / "comfy" / "model_management.py").is_file():
            raise SystemExit(f"ComfyUI not found at {path}: run scripts/setup_env.sh or set COMFYUI_PATH")
        self.comfyui_path = path
        while str(path) in sys.path:
            sys.path.remove(str(path))
        sys.path.insert(0, str(path))      # ahead of everything: the repo's nodes/ must not shadow nodes.py
        import torch
        self.torch = torch
        if threads:
            torch.set_num_threads(threads)
        from comfy.cli_args import args
        if device == "cpu":
            args.cpu = True                # model_management picks its device at import
        elif not torch.cuda.is_available():
            raise SystemExit("--device cuda, but torch.cuda.is_available() is False")
        import comfy.model_management
        import comfy.sd
        import comfy.utils
        import nodes
        for mod, expected in ((nodes, path / "nodes.py"),
                              (comfy.model_management, path / "comfy" / "model_management.py")):
            if Path(mod.__file__).resolve() != expected:
                raise SystemExit(f"{mod.__name__} came from {mod.__file__}, not {expected}: fix sys.path")
        comfy.utils.PROGRESS_BAR_ENABLED = False     # no tqdm bars in either variant (see README_speed.md)
        self.mm, self.sd, self.nodes = comfy.model_management, comfy.sd, nodes
        self.device = comfy.model_management.get_torch_device()
        if device == "cuda" and self.device.type != "cuda":
            raise SystemExit(f"ComfyUI chose {self.device}, not a CUDA device")
        if PACK_MODULE not in sys.modules:
            spec = importlib.util.spec_from_file_location(PACK_MODULE, REPO_ROOT / "__init__.py",
                                                          submodule_search_locations=[str(REPO_ROOT)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[PACK_MODULE] = module
            spec.loader.exec_module(module)
        import amdm_pack.amdm_core as core
        import amdm_pack.nodes.node_member as node_member
        import amdm_pack.nodes.node_sampler as node_sampler
        import amdm_pack.nodes.settings as settings
        self.core, self.node_member, self.node_sampler, self.settings = core, node_member, node_sampler, settings
        try:
            import comfyui_version
            self.comfyui_version = comfyui_version.__version__
        except Exception:  # noqa: BLE001
            self.comfyui_version = "unknown"

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    @property
    def clock_name(self) -> str:
        """The clock the ratios use: on a CPU the process's CPU time (torch runs on one thread, so it
        is the work done, and a shared machine's time slicing drops out); on a GPU wall time."""
        return "wall" if self.device.type == "cuda" else "cpu"

    def clock(self) -> float:
        return time.perf_counter() if self.device.type == "cuda" else time.process_time()


class UnetClock:
    """CPU time spent inside the members' UNet forwards (forward pre/post hooks), so the time a run
    spends OUTSIDE the UNet -- the host's and the pack's orchestration: samplers, conds, CFG, the
    aggregation -- can be compared without the UNet's (large, noisy) cost. CPU only: on a GPU the
    forward is asynchronous and only a synchronising hook could time it."""

    def __init__(self, enabled: bool):
        self.enabled, self.seconds, self._start = enabled, 0.0, None


class Member:
    def __init__(self, name, patcher, positive, negative, clock: UnetClock):
        self.name, self.patcher, self.positive, self.negative = name, patcher, positive, negative
        self.calls, self.clock = 0, clock
        dm = patcher.model.diffusion_model
        self.hooks = [dm.register_forward_pre_hook(self._pre), dm.register_forward_hook(self._post)]

    def _pre(self, module, args):
        self.calls += 1
        if self.clock.enabled:
            self.clock._start = time.process_time()

    def _post(self, module, args, output):
        if self.clock.enabled and self.clock._start is not None:
            self.clock.seconds += time.process_time() - self.clock._start
            self.clock._start = None


def seeded_conditioning(torch, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, TOKENS, WIDTH, generator=g), {"pooled_output": torch.randn(1, WIDTH, generator=g)}]]


def empty_conditioning(torch):
    return [[torch.zeros(1, TOKENS, WIDTH), {"pooled_output": torch.zeros(1, WIDTH)}]]


def _sd15_state_dict(host: Host, seed: int, device):
    """A random full-size SD1.5 UNet from comfy's own UNetModel class (plain torch layers with their
    default init, as tests/host/make_tiny_models.py does for the tiny one), the output conv rescaled
    so eps predictions have std ~1; fp16 state dict. Built on `device` (fast on a GPU)."""
    torch = host.torch
    import comfy.ldm.modules.diffusionmodules.openaimodel as oam
    mtm = _load_file_module("amdm_bench_make_tiny_models", REPO_ROOT / "tests" / "host" / "make_tiny_models.py")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        unet = oam.UNetModel(**SD15_UNET_CONFIG, dtype=torch.float32, device=device,
                             operations=mtm._init_ops()).eval().to(device)
    gen = torch.Generator().manual_seed(400)
    x = torch.randn(1, 4, 8, 8, generator=gen).to(device)
    ctx = torch.randn(1, TOKENS, WIDTH, generator=gen).to(device)
    with torch.no_grad():
        std = unet(x, timesteps=torch.tensor([500.0], device=device), context=ctx).float().std().item()
        if math.isfinite(std) and std > 0:
            scale = 2.0 ** round(math.log2(1.0 / std))
            unet.out[2].weight.mul_(scale)
            unet.out[2].bias.mul_(scale)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in unet.state_dict().items()}
    del unet
    return sd


def build_members(host: Host, kind: str, count: int) -> list[Member]:
    torch = host.torch
    members = []
    clock = UnetClock(enabled=host.device.type != "cuda")
    mtm = _load_file_module("amdm_bench_make_tiny_models", REPO_ROOT / "tests" / "host" / "make_tiny_models.py")
    for i in range(count):
        name = MEMBER_NAMES[i]
        if kind == "tiny":
            sd = mtm.unet_state_dict(mtm.variant_seed(name))
        else:
            sd = _sd15_state_dict(host, 1000 + i, host.device)
        patcher = host.sd.load_diffusion_model_state_dict(sd)
        del sd
        if patcher is None:
            raise SystemExit(f"ComfyUI did not recognise the generated {kind} UNet")
        detected = type(patcher.model.model_config).__name__
        if detected != "SD15":
            raise SystemExit(f"the generated {kind} UNet was detected as {detected}, not SD15")
        members.append(Member(name, patcher, seeded_conditioning(torch, i), empty_conditioning(torch), clock))
        if host.device.type == "cuda":
            torch.cuda.empty_cache()
    return members


# ------------------------------------------------------------------------------------------------
# the variants
# ------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, host: Host, members: list[Member], latent_side: int, steps: int):
        self.host, self.members, self.side, self.steps = host, members, latent_side, steps
        self.latent = {"samples": host.torch.zeros(1, 4, latent_side, latent_side)}

    def _reset_counts(self):
        for m in self.members:
            m.calls = 0
        self.members[0].clock.seconds = 0.0

    def _calls(self):
        return sum(m.calls for m in self.members)

    def mms(self, k: int, steps: int, window_end: int, helper_weight: float = 1.0):
        """The Multi-Model Sampler node's execute, as ComfyUI's executor calls it (inference mode)."""
        h, torch = self.host, self.host.torch
        base, helpers = self.members[0], self.members[1:k]
        chain = None
        for m in helpers:
            chain = h.node_member.MultiModelMember.execute(model=m.patcher, positive=m.positive, negative=m.negative,
                                                           cfg=CFG, weight=helper_weight, previous=chain).args[0]
        agg = h.settings.AggregationSettings(window_unit="steps", window_start=0, window_end=float(window_end))

        def run():
            with torch.inference_mode():
                return h.node_sampler.MultiModelSampler.execute(
                    model=base.patcher, positive=base.positive, negative=base.negative, members=chain,
                    latent_image=self.latent, seed=SEED, steps=steps, cfg=CFG, sampler_name=SAMPLER,
                    scheduler=SCHEDULER, denoise=1.0, base_weight=1.0, aggregation=agg, deviation=None)
        return self._timed(run, lambda out: (out.args[0]["samples"], json.loads(out.ui["amdm_summary"][0])))

    def stock(self, runs: list[tuple[int, int]]):
        """Stock KSampler node runs, one per (member index, steps)."""
        h, torch = self.host, self.host.torch

        def run():
            outs = []
            with torch.inference_mode():
                for idx, steps in runs:
                    m = self.members[idx]
                    outs.append(h.nodes.KSampler().sample(m.patcher, SEED, steps, CFG, SAMPLER, SCHEDULER,
                                                          m.positive, m.negative, self.latent, denoise=1.0)[0])
            return outs
        return self._timed(run, lambda outs: (outs[0]["samples"], None))

    def _timed(self, run, unpack):
        gc.collect()
        self._reset_counts()
        self.host.sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = run()
        self.host.sync()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        samples, summary = unpack(out)
        finite = bool(self.host.torch.isfinite(samples).all())
        clock = self.members[0].clock
        return {"seconds": seconds, "cpu_seconds": cpu_seconds, "unet_calls": self._calls(), "finite": finite,
                "summary": summary,
                "outside_unet_cpu_seconds": cpu_seconds - clock.seconds if clock.enabled else None}

    def variants(self, k: int, steps: int, window_end: int):
        """name -> callable; every variant does N + (K-1)(e+1) evaluations."""
        helper_steps = window_end + 1
        total = steps + (k - 1) * helper_steps
        return {
            "mms": lambda: self.mms(k, steps, window_end),
            "separate": lambda: self.stock([(0, steps)] + [(i, helper_steps) for i in range(1, k)]),
            "single": lambda: self.stock([(0, total)]),
        }


def ratio_stats(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    q = statistics.quantiles(vals, n=4) if len(vals) >= 2 else [vals[0]] * 3
    return {"median": statistics.median(vals), "q1": q[0], "q3": q[2], "min": min(vals), "max": max(vals),
            "n": len(vals), "all": vals}


def measure_config(bench: Bench, group: str, k: int, steps: int, window_end: int, repeats: int,
                   free: bool = False, deadline: float | None = None) -> dict:
    """One configuration: variants interleaved in rotating order, `repeats` times (fewer, but at
    least one, once time.perf_counter() passes `deadline`)."""
    if free:
        variants = {"mms": lambda: bench.mms(k, steps, window_end, helper_weight=0.0),
                    "single": lambda: bench.stock([(0, steps)])}
        expected = steps
    else:
        variants = bench.variants(k, steps, window_end)
        expected = steps + (k - 1) * (window_end + 1)
    names = list(variants)
    times = {n: [] for n in names}
    cpu_times = {n: [] for n in names}
    outside = {n: [] for n in names}
    calls = {n: set() for n in names}
    finite = {n: True for n in names}
    summary = None
    truncated = False
    for r in range(repeats):
        if r > 0 and deadline is not None and time.perf_counter() > deadline:
            repeats, truncated = r, True
            break
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            res = variants[n]()
            times[n].append(res["seconds"])
            cpu_times[n].append(res["cpu_seconds"])
            outside[n].append(res["outside_unet_cpu_seconds"])
            calls[n].add(res["unet_calls"])
            finite[n] = finite[n] and res["finite"]
            if res["summary"] is not None:
                summary = res["summary"]
    clocks = {"wall": times, "cpu": cpu_times}
    primary = bench.host.clock_name
    per_repeat = {}
    for clock, t in clocks.items():
        for n in names:
            if n != "mms":
                per_repeat[f"{clock}_ratio_vs_{n}"] = ratio_stats([t["mms"][r] / t[n][r] for r in range(repeats)])
    for n in names:
        if n != "mms":
            per_repeat[f"ratio_vs_{n}"] = per_repeat[f"{primary}_ratio_vs_{n}"]
    entry = {
        "group": group, "K": k, "steps": steps, "window_end": window_end,
        "helper_weight": 0.0 if free else 1.0,
        "repeats": repeats, "truncated_by_time_budget": truncated,
        "expected_evaluations": expected,
        "summary_total_evaluations": summary["total_evaluations"] if summary else None,
        "summary_window_steps": summary["window_steps"] if summary else None,
        "summary_member_evaluations": [m["evaluations"] for m in summary["members"]] if summary else None,
        "unet_calls": {n: sorted(calls[n]) for n in names},
        "finite": finite,
        "clock": primary,
        "seconds": times,
        "cpu_seconds": cpu_times,
        "median_seconds": {n: statistics.median(clocks[primary][n]) for n in names},
        "outside_unet_cpu_seconds": outside if outside["mms"][0] is not None else None,
        "order": "rotating: repeat r starts with variant r mod %d of %s" % (len(names), names),
    }
    entry.update(per_repeat)
    if entry["outside_unet_cpu_seconds"]:
        # the host's + the pack's work outside the UNet, ms per evaluation, and what the MMS adds
        entry["outside_unet_ms_per_eval"] = {n: statistics.median(outside[n]) / expected * 1e3 for n in names}
        for n in names:
            if n != "mms":
                entry[f"extra_outside_ms_per_eval_vs_{n}"] = ratio_stats(
                    [(outside["mms"][r] - outside[n][r]) / expected * 1e3 for r in range(repeats)])
    log.info("%-7s K=%d N=%d e=%d evals=%d summary=%s calls=%s  MMS/separate=%s MMS/single=%s (%s time; wall: "
             "%s, %s)", group, k, steps, window_end, expected, entry["summary_total_evaluations"], entry["unet_calls"],
             _fmt(entry.get("ratio_vs_separate")), _fmt(entry.get("ratio_vs_single")), primary,
             _fmt(entry.get("wall_ratio_vs_separate")), _fmt(entry.get("wall_ratio_vs_single")))
    return entry


def _fmt(stats):
    return "-" if not stats else f"{stats['median']:.3f}"


# ------------------------------------------------------------------------------------------------
# math vs one forward
# ------------------------------------------------------------------------------------------------
def aggregation_math(core, states, mean0, weights, mode, sigma_next, step):
    """What the loop does per aggregated step (amdm_core.loop._aggregate_step, faithful preset,
    deviation on the base): states to VP units, aggregate, trace the norm ratio (a host sync on a
    GPU, as in the loop), deviation step of the base toward its own mean, back to k-space."""
    u = [core.to_vp(s, sigma_next) for s in states]
    x_hat = core.spherical_aggregate(u, weights, mode)
    ratio = float((core.batch_norm(x_hat) / core.batch_norm(u[0]).clamp_min(1e-30)).mean())
    mu = core.to_vp(mean0, sigma_next)
    base = core.deviation_step(x_hat, mu, step, "absolute")
    return [core.from_vp(base, sigma_next)] + list(states[1:]), ratio


def time_math(host: Host, side: int, k: int, mode: str, outer: int, min_seconds: float) -> float:
    torch, core = host.torch, host.core
    g = torch.Generator().manual_seed(side * 100 + k)
    sigma_next = 7.5
    states = [(torch.randn(1, 4, side, side, generator=g) * sigma_next).to(host.device) for _ in range(k)]
    mean0 = states[0] + 0.1 * torch.randn(1, 4, side, side, generator=g).to(host.device)
    weights = core.spherical_weights([1.0] * k)
    step = core.step_from_reference(45)
    with torch.inference_mode():
        for _ in range(3):
            aggregation_math(core, states, mean0, weights, mode, sigma_next, step)
        host.sync()
        inner, t = 1, 0.0
        while True:                      # calibrate: one sample lasts >= min_seconds
            t0 = host.clock()
            for _ in range(inner):
                aggregation_math(core, states, mean0, weights, mode, sigma_next, step)
            host.sync()
            t = host.clock() - t0
            if t >= min_seconds or inner >= 4096:
                break
            inner *= 2
        samples = [t / inner]
        for _ in range(outer - 1):
            gc.collect()
            t0 = host.clock()
            for _ in range(inner):
                aggregation_math(core, states, mean0, weights, mode, sigma_next, step)
            host.sync()
            samples.append((host.clock() - t0) / inner)
    return statistics.median(samples)


def time_forward(host: Host, member: Member, side: int, warmup: int, reps: int) -> dict:
    """One UNet forward (batch 1) at the latent size, in the dtype and on the device ComfyUI loaded it."""
    torch = host.torch
    host.mm.load_models_gpu([member.patcher])
    unet = member.patcher.model.diffusion_model
    dtype = member.patcher.model.get_dtype()
    g = torch.Generator().manual_seed(side)
    x = torch.randn(1, 4, side, side, generator=g).to(host.device, dtype)
    ctx = torch.randn(1, TOKENS, WIDTH, generator=g).to(host.device, dtype)
    ts = torch.tensor([500.0], device=host.device)
    samples = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            gc.collect()
            host.sync()
            t0 = host.clock()
            unet(x, timesteps=ts, context=ctx)
            host.sync()
            if i >= warmup:
                samples.append(host.clock() - t0)
    return {"seconds": statistics.median(samples), "all": samples, "warmup": warmup, "dtype": str(dtype)}


# ------------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------------
class CpuPeak:
    """Peak RSS of a block above the RSS before it (Linux). glibc's mmap threshold is fixed at
    64 KiB first (M_MMAP_THRESHOLD; fixing it also stops its dynamic growth), so every large
    tensor is its own mapping and its pages go back to the OS when freed: RSS then follows the
    live heap instead of keeping earlier peaks. The peak is VmHWM after writing 5 to
    /proc/self/clear_refs (resets it to the current RSS); where that fails, a thread samples RSS."""

    def __init__(self):
        self.method = "VmHWM after clear_refs"
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 * 1024)      # M_MMAP_THRESHOLD
            libc.mallopt(-1, 128 * 1024)     # M_TRIM_THRESHOLD
            self._trim = libc.malloc_trim
            self.method += ", glibc mmap threshold 64 KiB"
        except (OSError, AttributeError):
            self._trim = None
            self.method += " (not glibc: earlier peaks may stay resident)"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm = True
        except OSError:
            self._hwm = False
            self.method = "RSS sampled every 2 ms by a thread (psutil)"

    @staticmethod
    def _status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise KeyError(key)

    def measure(self, fn):
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        before = self._status("VmRSS")
        if self._hwm:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            fn()
            peak = self._status("VmHWM")
        else:
            import threading

            import psutil
            proc, stop, seen = psutil.Process(), threading.Event(), [before]

            def poll():
                while not stop.is_set():
                    seen.append(proc.memory_info().rss)
                    time.sleep(0.002)
            t = threading.Thread(target=poll, daemon=True)
            t.start()
            try:
                fn()
            finally:
                stop.set()
                t.join()
            peak = max(seen)
        return {"before_bytes": before, "working_bytes": max(0, peak - before)}


def measure_memory(host: Host, bench: Bench, ks, steps, window_end) -> tuple[list, str]:
    torch = host.torch
    cpu = host.device.type != "cuda"
    peak = CpuPeak() if cpu else None
    method = peak.method if cpu else ("torch.cuda.max_memory_allocated of a run started with every model "
                                      "unloaded (weights load inside the run)")

    def one(fn, patchers):
        if cpu:
            m = peak.measure(fn)
            weights = sum(p.model_size() for p in patchers)
            return {"weights_bytes": weights, "working_bytes": m["working_bytes"],
                    "peak_bytes": weights + m["working_bytes"], "rss_before_bytes": m["before_bytes"]}
        host.mm.unload_all_models()
        gc.collect()
        host.mm.soft_empty_cache()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak_b = torch.cuda.max_memory_allocated() - base
        resident = torch.cuda.memory_allocated() - base
        weights = sum(p.model_size() for p in patchers)
        return {"weights_bytes": weights, "peak_bytes": peak_b, "working_bytes": max(0, peak_b - resident),
                "resident_after_bytes": resident}

    rows = []
    for k in ks:
        pk = [m.patcher for m in bench.members[:k]]
        v = bench.variants(k, steps, window_end)
        row = {"K": k, "steps": steps, "window_end": window_end,
               "mms": one(v["mms"], pk),
               "stock_separate": one(v["separate"], pk),
               "stock_single_N": one(lambda: bench.stock([(0, steps)]), pk[:1])}
        w = row["mms"]["weights_bytes"]
        row["mms_peak_vs_weights"] = row["mms"]["peak_bytes"] / w if w else None
        row["separate_peak_vs_weights"] = row["stock_separate"]["peak_bytes"] / w if w else None
        log.info("memory K=%d: weights %.1f MB, MMS peak %.1f MB (working %.1f MB), separate peak %.1f MB, "
                 "single N-step working %.1f MB", k, w / 1e6, row["mms"]["peak_bytes"] / 1e6,
                 row["mms"]["working_bytes"] / 1e6, row["stock_separate"]["peak_bytes"] / 1e6,
                 row["stock_single_N"]["working_bytes"] / 1e6)
        rows.append(row)
    return rows, method


# ------------------------------------------------------------------------------------------------
# provenance
# ------------------------------------------------------------------------------------------------
def git_info() -> dict:
    env_commit = os.environ.get("AMDM_BENCH_COMMIT")
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True, timeout=20).stdout.strip()
        status = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True, timeout=20).stdout.splitlines()
        return {"commit": env_commit or commit, "source": "env AMDM_BENCH_COMMIT" if env_commit else "git",
                "modified_tracked_files": [s[3:] for s in status]}
    except (OSError, subprocess.SubprocessError):
        return {"commit": env_commit or "unknown", "source": "env AMDM_BENCH_COMMIT" if env_commit else "none",
                "modified_tracked_files": None}


def device_info(host: Host) -> dict:
    torch = host.torch
    if host.device.type == "cuda":
        p = torch.cuda.get_device_properties(host.device)
        return {"type": "cuda", "name": p.name, "total_memory_bytes": p.total_memory,
                "cuda": torch.version.cuda, "vram_state": str(host.mm.vram_state)}
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), name)
    except OSError:
        pass
    return {"type": "cpu", "name": name, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def command_line(argv) -> str:
    return shlex.join(["python", "bench/speed/run.py", *argv])


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="every measurement at its smallest (tiny models; < 1 min on 2 CPU cores); "
                           "the test suite runs it")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="K = 2..8, windows 1/3/7/15 of 20 steps, 4x64x64 and 4x128x128, repeats")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--model", choices=["tiny", "sd15"], default=None,
                   help="tiny: the test suite's 13.6 M-parameter SD1.5-format UNet; sd15: full-size SD1.5 UNet, "
                        "random weights (default: tiny on cpu, sd15 on cuda)")
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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    if ns.replot is not None:
        results = json.loads((ns.replot / "results.json").read_text())
        written = report.write_all(results, ns.replot)
        log.info("rewrote %s in %s from its results.json", ", ".join(written), ns.replot)
        return 0

    t_start = time.perf_counter()
    cfg = dict(MODES[ns.mode])
    model = ns.model or ("sd15" if ns.device == "cuda" else "tiny")
    side = ns.latent or LATENT_BY_MODEL[model]
    if ns.ks:
        cfg["ks"] = _ints(ns.ks)
    if ns.window_ends:
        cfg["window_ends"] = _ints(ns.window_ends)
    if ns.steps:
        cfg["steps"] = ns.steps
    if ns.window_k:
        cfg["window_k"] = ns.window_k
    if ns.free_k:
        cfg["free_k"] = ns.free_k
    if ns.memory_ks:
        cfg["memory_ks"] = _ints(ns.memory_ks)
    if ns.math_sizes:
        cfg["math_sizes"] = _ints(ns.math_sizes)
    if ns.repeats:
        cfg["repeats"] = ns.repeats
        cfg["min_repeats"] = min(cfg["min_repeats"], ns.repeats)
    if ns.time_budget is not None:
        cfg["time_budget"] = ns.time_budget
    skip = {s.strip() for s in ns.skip.split(",") if s.strip()}
    steps, e0 = cfg["steps"], cfg["window_end"]
    if any(e > steps - 1 for e in cfg["window_ends"] + [e0]):
        raise SystemExit(f"window ends must be <= N - 1 = {steps - 1}")
    threads = ns.threads or (1 if ns.device == "cpu" else None)
    out = ns.out or RESULTS_ROOT / (ns.device + ("-quick" if ns.mode == "quick" else ""))
    out.mkdir(parents=True, exist_ok=True)

    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    host = Host(ns.device, threads)
    torch = host.torch
    log.info("ComfyUI %s at %s, torch %s, device %s", host.comfyui_version, host.comfyui_path, torch.__version__,
             host.device)
    window_k = cfg["window_k"] if "window" not in skip else 2
    k_max = max(cfg["ks"] + [window_k, cfg["free_k"], *cfg["memory_ks"]])
    t0 = time.perf_counter()
    members = build_members(host, model, k_max)
    build_s = time.perf_counter() - t0
    m0 = members[0].patcher
    log.info("%d %s members built in %.1f s (%.1f MB each, %s)", k_max, model, build_s, m0.model_size() / 1e6,
             m0.model_dtype())
    bench = Bench(host, members, side, steps)

    # warm-up: every member loaded (on a GPU they stay resident), kernels chosen, caches filled
    t0 = time.perf_counter()
    warm = {}
    warm_steps = min(steps, 3)
    for name, fn in bench.variants(k_max, warm_steps, 1).items():
        warm[name] = fn()
    warm_s = time.perf_counter() - t0
    # Everything alive now (torch, ComfyUI, the members) goes to the permanent generation: a full
    # gc.collect() before each timed run then takes milliseconds instead of ~0.6 s.
    gc.collect()
    gc.freeze()
    warm_evals = 3 * (warm_steps + (k_max - 1) * 2)
    t_eval = warm_s / warm_evals
    log.info("warm-up %.1f s, about %.3f s per evaluation (K=%d, latent %dx%d)", warm_s, t_eval, k_max, side, side)

    # plan: repeats so that the overhead phases fit the time budget (when one is given)
    plan_k = [] if "overhead" in skip else cfg["ks"]
    plan_w = [] if "window" in skip else [e for e in cfg["window_ends"] if not (window_k in plan_k and e == e0)]
    evals_per_repeat = sum(3 * (steps + (k - 1) * (e0 + 1)) for k in plan_k)
    evals_per_repeat += sum(3 * (steps + (window_k - 1) * (e + 1)) for e in plan_w)
    evals_per_repeat += 0 if "free" in skip else 2 * steps
    repeats = cfg["repeats"]
    budget = cfg["time_budget"]
    if budget and evals_per_repeat:
        left = budget - (time.perf_counter() - t_start)
        fit = int(0.6 * left / (evals_per_repeat * t_eval))
        repeats = max(cfg["min_repeats"], min(repeats, fit))
    log.info("overhead: %d repeats of %d evaluations per repeat (estimated %.0f s)", repeats, evals_per_repeat,
             repeats * evals_per_repeat * t_eval)

    results = {
        "schema": SCHEMA,
        "command": command_line(argv),
        "wrapper": os.environ.get("AMDM_BENCH_WRAPPER"),
        "python_executable": sys.executable,
        "git": git_info(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": ns.mode,
        "device": device_info(host),
        "torch": torch.__version__,
        "comfyui": host.comfyui_version,
        "python": platform.python_version(),
        "load_average_1min": {"start": load_start, "end": None},
        "model": {"kind": model, "parameters": sum(p.numel() for p in m0.model.diffusion_model.parameters()),
                  "dtype": str(m0.model_dtype()), "weight_bytes_per_member": m0.model_size(),
                  "build_seconds": build_s, "detected_as": type(m0.model.model_config).__name__},
        "clock": {"name": host.clock_name,
                  "meaning": "process CPU time (time.process_time; torch on one thread)" if host.clock_name == "cpu"
                  else "wall time (time.perf_counter, CUDA synchronised)"},
        "settings": {"steps": steps, "ks": cfg["ks"], "window_end": e0, "window_k": window_k,
                     "window_ends": cfg["window_ends"], "free_k": cfg["free_k"], "latent": [1, 4, side, side],
                     "cfg": CFG, "sampler": SAMPLER, "scheduler": SCHEDULER, "seed": SEED, "repeats": repeats,
                     "repeats_requested": cfg["repeats"], "time_budget": budget, "math_sizes": cfg["math_sizes"],
                     "math_ks": cfg["math_ks"], "memory_ks": cfg["memory_ks"], "skipped": sorted(skip),
                     "aggregation": "spherical, window_unit steps 0..e (aggregates steps 1..e), independent noise",
                     "deviation": "faithful preset (step 0.35, absolute, base member)",
                     "weights": "base 1.0, helpers 1.0 (normalised to sum of squares 1)",
                     "progress_bars": "off (comfy.utils.PROGRESS_BAR_ENABLED = False) in every variant"},
        "warmup": {"seconds": warm_s, "seconds_per_evaluation": t_eval,
                   "finite": {k: v["finite"] for k, v in warm.items()},
                   "unet_calls": {k: v["unet_calls"] for k, v in warm.items()}},
        "overhead": [],
        "math": [],
        "memory": [],
        "memory_method": None,
        "complete": False,
        "elapsed_seconds": None,
    }

    def save():
        results["elapsed_seconds"] = time.perf_counter() - t_start
        if hasattr(os, "getloadavg"):
            results["load_average_1min"]["end"] = os.getloadavg()[0]
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")

    save()               # saved again after every configuration: a run cut short keeps what it measured
    deadline = t_start + 0.75 * budget if budget else None
    overhead = results["overhead"]
    if "overhead" not in skip:
        for k in cfg["ks"]:
            overhead.append(measure_config(bench, "K", k, steps, e0, repeats, deadline=deadline))
            save()
    if "window" not in skip:
        for e in cfg["window_ends"]:
            same = next((o for o in overhead if o["K"] == window_k and o["window_end"] == e), None)
            if same is not None:
                overhead.append(dict(same, group="window"))
            else:
                overhead.append(measure_config(bench, "window", window_k, steps, e, repeats, deadline=deadline))
            save()
    if "free" not in skip:
        overhead.append(measure_config(bench, "free", cfg["free_k"], steps, e0, repeats, free=True,
                                       deadline=deadline))
        save()

    if "math" not in skip:
        min_s = 0.05 if host.device.type == "cpu" else 0.02
        for s in cfg["math_sizes"]:
            fwd = time_forward(host, members[0], s, cfg["forward_warmup"], cfg["forward_reps"])
            entries = []
            for mode in ("spherical", "slerp"):
                for k in cfg["math_ks"]:
                    sec = time_math(host, s, k, mode, cfg["math_outer"], min_s)
                    entries.append({"mode": mode, "K": k, "seconds": sec, "ratio_vs_forward": sec / fwd["seconds"]})
            results["math"].append({"latent": [4, s, s], "batch": 1, "forward": fwd, "entries": entries})
            save()
            log.info("math at 4x%dx%d: forward %.4f s; spherical K=%d %.2e s (ratio %.2e), slerp K=%d %.2e s "
                     "(ratio %.2e)", s, s, fwd["seconds"], entries[0]["K"], entries[0]["seconds"],
                     entries[0]["ratio_vs_forward"], entries[-1]["K"], entries[-1]["seconds"],
                     entries[-1]["ratio_vs_forward"])

    if "memory" not in skip:
        results["memory"], results["memory_method"] = measure_memory(host, bench, cfg["memory_ks"], steps, e0)

    results["complete"] = True
    save()
    written = report.write_all(results, out)
    log.info("%s", report.summary_lines(results))
    log.info("wrote %s in %s (%.0f s)", ", ".join(written + ["results.json"]), out, results["elapsed_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
