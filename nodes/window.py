"""Resolve the user's window (steps, sigma or percent of the noise range) on the actual sigmas."""
from __future__ import annotations

import math

import torch

from ..amdm_core import NoiseRange, StepWindow, window_from_sigmas, window_from_steps
from .settings import AggregationSettings, ComposeSettings, RangeSettings


def _sigma_span(unit: str, start: float, end: float, model_sampling) -> tuple[float, float]:
    """(high, low) noise levels of a percent or sigma span; percent 0 is "from the very start"
    and percent 1 "to the very end", whatever sigma_max and the schedule are."""
    if unit == "sigma":
        return float(start), float(end)
    high = math.inf if start <= 0 else float(model_sampling.percent_to_sigma(float(start)))
    low = 0.0 if end >= 1 else float(model_sampling.percent_to_sigma(float(end)))
    return high, low


def resolve_range(rng: RangeSettings, model_sampling) -> NoiseRange:
    return NoiseRange(*_sigma_span(rng.unit, rng.start, rng.end, model_sampling))


def resolve_compose_window(c: ComposeSettings, sigmas: torch.Tensor, model_sampling) -> NoiseRange:
    """The composition window as a noise range; in steps it spans steps start..end of this run."""
    if c.window_unit != "steps":
        return NoiseRange(*_sigma_span(c.window_unit, c.window_start, c.window_end, model_sampling))
    s = [float(v) for v in sigmas]
    a, b = int(round(c.window_start)), min(int(round(c.window_end)), len(s) - 2)
    if a > b:
        return NoiseRange(0.0, 0.0)
    return NoiseRange(s[a], s[b + 1])


def resolve_window(agg: AggregationSettings, sigmas: torch.Tensor, model_sampling) -> StepWindow:
    """Steps are indices into the sigmas of this run; sigma and percent are absolute noise levels
    (percent as ComfyUI's start/end percent: 0 = the model's highest noise, 1 = none)."""
    n_steps = len(sigmas) - 1
    if agg.window_unit == "steps":
        return window_from_steps(int(round(agg.window_start)), int(round(agg.window_end)), n_steps)
    high, low = _sigma_span(agg.window_unit, agg.window_start, agg.window_end, model_sampling)
    return window_from_sigmas(high, low, sigmas.detach().cpu())
