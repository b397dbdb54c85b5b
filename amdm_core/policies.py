"""Every mode, unit and policy name the pack knows, and each refusal about them, stated once.

The nodes offer these vocabularies as COMBO options and validate with these checks; the core loop
runs with them. Nothing here imports torch except the noise helpers at the end.
"""
from __future__ import annotations

import math

import torch

AGGREGATION_MODES = ("spherical", "slerp")              # AMDM's operator on member states
COMPOSE_MODES = ("composable", "average")               # prediction-space composition (not AMDM)
DEVIATION_MODES = ("absolute", "clamped", "relative")   # how far the deviation step goes
MU_TARGETS = ("faithful", "reference")                  # whose mean the deviation step aims at
OPTIMISED_MEMBERS = ("base", "all")                     # who takes the deviation step
INITIAL_NOISE_POLICIES = ("independent", "shared")      # helpers' starting noise
STEP_NOISE_POLICIES = ("independent", "shared")         # stochastic samplers inside the window
STEP_SCALES = ("per_sqrt_n", "absolute", "per_sqrt_reference")   # units of a deviation step
NODE_STEP_UNITS = ("per_sqrt_n", "per_sqrt_reference")  # raw L2 ("absolute") is not offered: steps cap at 10
WINDOW_UNITS = ("percent", "sigma", "steps")
RANGE_UNITS = ("percent", "sigma")
STATE_FAMILIES = ("eps", "flow", "edm", "rflow")        # sampler state <-> VP units (amdm_core.state_units)
GUIDANCE_FORMS = ("autoguidance", "autoguidance_cfg")   # model guidance (amdm_core.guidance)
SUPERPOSE_MODES = ("or", "and")                          # SuperDiff superposition (amdm_core.superpose)


def check_one_of(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"'{name}' = {value!r} is not one of {list(allowed)}")


def check_span(unit: str, start: float, end: float, what: str) -> None:
    """start/end of a window or range: percent 0..1 (start <= end), sigma (start = the higher
    noise level, >= end) or step indices (start <= end)."""
    for name, v in ((f"{what}_start", start), (f"{what}_end", end)):
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
        if unit == "percent" and float(v) > 1:
            raise ValueError(f"'{name}' = {v} is a percent of the noise range; use 0..1")
    if unit == "sigma" and start < end:
        raise ValueError(f"with {what}_unit 'sigma', '{what}_start' ({start}) is the higher noise level and must "
                         f"be >= '{what}_end' ({end})")
    if unit != "sigma" and start > end:
        raise ValueError(f"'{what}_start' ({start}) is after '{what}_end' ({end})")


def check_step(name: str, value: float, mode: str) -> None:
    """A deviation step length: finite, >= 0, and a fraction in 'relative' mode."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
    if mode == "relative" and v > 1:
        raise ValueError(f"'{name}' = {v}: in 'relative' mode the step is a fraction of the distance (0..1)")


def check_initial_noise(mode: str, initial_noise: str) -> None:
    if initial_noise == "shared" and mode == "spherical":
        raise ValueError("initial_noise 'shared' with mode 'spherical' makes the members' states nearly identical, "
                         "and the spherical sum then inflates them by the sum of the weights; use 'independent' "
                         "initial noise or mode 'slerp'")


def check_step_noise(mode: str, step_noise: str, stochastic: bool, separates_noise: bool, sampler: str) -> None:
    """One draw shared by all members is added coherently by a spherical sum (inflated by the sum of
    the weights) unless the stepper can add it after aggregating the pre-noise means."""
    if stochastic and step_noise == "shared" and mode == "spherical" and not separates_noise:
        raise ValueError(f"'step_noise' = 'shared' with mode 'spherical' and the stochastic sampler '{sampler}' "
                         f"would add one noise draw coherently (inflating it by the sum of the weights): use "
                         f"step_noise 'independent' or mode 'slerp'.")


def step_seed(seed: int, index: int, stream: int) -> int:
    """A distinct, reproducible seed per (step, member stream), never the run's own seed."""
    return (int(seed) * 6_364_136_223_846_793_005 + (index + 1) * 1_442_695_040_888_963_407
            + stream * 2_654_435_761) % (2 ** 63)


def helper_initial_noise(noise: torch.Tensor, seed: int | None, n_helpers: int, policy: str) -> list[torch.Tensor]:
    """Each helper's starting noise. 'independent' continues the base seed's generator (as the
    reference code draws its models' noises in sequence); 'shared', or an all-zero base noise (no
    noise added, e.g. denoise from a given latent), reuses the base noise."""
    check_one_of("initial_noise", policy, INITIAL_NOISE_POLICIES)
    if policy == "shared" or not torch.any(noise != 0):
        return [noise] * n_helpers
    g = torch.Generator(device="cpu").manual_seed(0 if seed is None else int(seed))
    torch.randn(noise.shape, generator=g, dtype=noise.dtype)       # the base's draw
    return [torch.randn(noise.shape, generator=g, dtype=noise.dtype) for _ in range(n_helpers)]


def planned_member_steps(n_steps: int, helper_steps) -> int:
    """Member steps (evaluations for one-evaluation samplers) of an AMDM run: the base at every
    step, each helper at the steps it runs (helper_steps: one count per helper)."""
    return n_steps + sum(helper_steps)
