"""Phase 2 of the speed benchmark: the core's aggregation step, per aggregated step, against one UNet
forward at the same latent size.

What one aggregated step of `amdm_core.amdm_sample` does (its `_aggregate_step`) is written here with
the core's public functions, in the loop's order, for the configuration the overhead runs use:
a deterministic sampler (Euler), independent step noise, every member taking part, the faithful
preset's deviation (the base member only, toward its own mean). Before it is timed, every (size,
mode, K) is checked against `amdm_sample` itself: the same post-step states replayed through the
real loop (a Stepper that returns them) must give bit-identical results and the same trace norm
ratio, so the time is that of the core's own step and cannot drift from it unnoticed.
"""
from __future__ import annotations

import gc
import logging
import statistics

from host_setup import TOKENS, WIDTH, Host, Member, latent_channels

log = logging.getLogger("amdm.bench")

SIGMAS = (14.6, 10.0, 7.5)      # a two-step schedule; step 1 (10.0 -> 7.5) is the aggregated one
MODES = ("spherical", "slerp")


def aggregation_step(core, results, raw_weights, mode: str, sigma_next: float, deviation):
    """One aggregated step of amdm_sample on the members' post-step results (StepResult, member 0 the
    base): returns (the members' new states, the trace's norm ratio ||aggregate|| / ||base||)."""
    if deviation.members != "base" or deviation.target != "faithful":
        raise ValueError("the benchmark times the faithful target with the base member optimised")
    weights = core.spherical_weights(raw_weights)          # amdm_sample normalises at every aggregated step
    c = core.vp_scale(sigma_next)                          # post-step states sit at sigma_next
    u = [r.state / c for r in results]
    x_hat = core.spherical_aggregate(u, weights, mode)
    ratio = float((core.batch_norm(x_hat) / core.batch_norm(u[0]).clamp_min(1e-30)).mean())  # a host sync
    mu = results[0].mean / c                               # the faithful mu: the base's own post-step mean
    vp = core.deviation_step(x_hat, mu, deviation.step_for(0), deviation.mode, deviation.scale)
    base = vp * c + 0                                      # + the step noise, 0 without shared noise (as the loop)
    return [base] + [r.state for r in results[1:]], ratio


class ReplayStepper:
    """A Stepper (amdm_core's protocol) that returns the same post-step result of each member at every
    step, so amdm_sample aggregates exactly those states. Each step calls the member's denoiser once,
    as a sampler step does (the loop keeps each member's first evaluation)."""
    stochastic = False
    separates_noise = True

    def __init__(self, results):
        self.results = results

    def step(self, denoise, x, sigma, sigma_next, index, stream):
        denoise(x, x.new_ones([x.shape[0]]) * sigma)
        return self.results[stream]

    def run(self, denoise, x, sigmas, first_index, stream, callback=None):
        raise AssertionError("the replayed run aggregates at its last step: nothing runs after the window")


def matches_amdm_sample(core, torch, results, raw_weights, mode: str, deviation) -> bool:
    """The benchmark's step == the step amdm_sample takes on the same results (bitwise, same norm ratio)."""
    sigmas = torch.tensor(SIGMAS)
    k = len(results)
    with torch.inference_mode():
        out, trace = core.amdm_sample([lambda x, sigma: x] * k, sigmas, [r.state for r in results],
                                      weights=raw_weights, window=core.window_from_steps(1, 1, len(SIGMAS) - 1),
                                      stepper=ReplayStepper(results), mode=mode, deviation=deviation)
        states, ratio = aggregation_step(core, results, raw_weights, mode, float(sigmas[-1]), deviation)
    return bool(torch.equal(out, states[0])) and trace.norm_ratio == [ratio]


def step_results(host: Host, side: int, k: int, channels: int = 4):
    """K members' post-step results at channels x side x side (batch 1, fp32 as in the sampler): Euler
    steps, so each result's mean is its state."""
    torch, core = host.torch, host.core
    g = torch.Generator().manual_seed(side * 100 + k)
    states = [(torch.randn(1, channels, side, side, generator=g) * SIGMAS[-1]).to(host.device) for _ in range(k)]
    return [core.StepResult(s, s, SIGMAS[-1]) for s in states]


def median_time(host: Host, fn, outer: int, min_seconds: float) -> float:
    """Median seconds per call of fn: calls repeated until one sample lasts >= min_seconds, `outer` samples."""
    for _ in range(3):
        fn()
    host.sync()
    inner, t = 1, 0.0
    while True:                      # calibrate: one sample lasts >= min_seconds
        t0 = host.clock()
        for _ in range(inner):
            fn()
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
            fn()
        host.sync()
        samples.append((host.clock() - t0) / inner)
    return statistics.median(samples)


def time_aggregation_step(host: Host, side: int, k: int, mode: str, outer: int, min_seconds: float,
                          channels: int = 4) -> dict:
    torch, core = host.torch, host.core
    results = step_results(host, side, k, channels)
    raw_weights, deviation = [1.0] * k, core.FAITHFUL.deviation
    same = matches_amdm_sample(core, torch, results, raw_weights, mode, deviation)
    with torch.inference_mode():
        seconds = median_time(host, lambda: aggregation_step(core, results, raw_weights, mode, SIGMAS[-1],
                                                             deviation), outer, min_seconds)
    return {"mode": mode, "K": k, "seconds": seconds, "matches_amdm_sample": same}


def time_forward(host: Host, member: Member, side: int, warmup: int, reps: int) -> dict:
    """One UNet forward (batch 1) at the latent size, in the dtype and on the device ComfyUI loaded it."""
    torch = host.torch
    host.mm.load_models_gpu([member.patcher])
    unet = member.patcher.model.diffusion_model
    dtype = member.patcher.model.get_dtype()
    g = torch.Generator().manual_seed(side)
    x = torch.randn(1, latent_channels(member), side, side, generator=g).to(host.device, dtype)
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


def measure_math(host: Host, member: Member, side: int, cfg: dict) -> dict:
    """One row of results["math"]: the forward at C x side x side (the member's latent channels), then
    every (mode, K) against it."""
    channels = latent_channels(member)
    min_s = 0.05 if host.device.type == "cpu" else 0.02
    fwd = time_forward(host, member, side, cfg["forward_warmup"], cfg["forward_reps"])
    entries = []
    for mode in MODES:
        for k in cfg["math_ks"]:
            en = time_aggregation_step(host, side, k, mode, cfg["math_outer"], min_s, channels)
            en["ratio_vs_forward"] = en["seconds"] / fwd["seconds"]
            entries.append(en)
    log.info("math at %dx%dx%d: forward %.4f s; spherical K=%d %.2e s (ratio %.2e), slerp K=%d %.2e s "
             "(ratio %.2e); every step equal to amdm_sample's: %s", channels, side, side, fwd["seconds"], entries[0]["K"],
             entries[0]["seconds"], entries[0]["ratio_vs_forward"], entries[-1]["K"], entries[-1]["seconds"],
             entries[-1]["ratio_vs_forward"], all(en["matches_amdm_sample"] for en in entries))
    return {"latent": [channels, side, side], "batch": 1, "forward": fwd, "entries": entries}
