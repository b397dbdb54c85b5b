"""Resolve the user's window (steps, sigma or percent of the noise range) on the actual sigmas."""
from __future__ import annotations

import math

import torch

from ..amdm_core import EMPTY_WINDOW, NoiseRange, StepWindow, window_covering, window_from_sigmas, window_from_steps
from .settings import STRENGTH_PER_INTERVAL, AggregationSettings, ComposeSettings, GuidanceSettings, RangeSettings


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


def resolve_compose_window(c: ComposeSettings | GuidanceSettings, sigmas: torch.Tensor, model_sampling) -> NoiseRange:
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
    if agg.strength == STRENGTH_PER_INTERVAL:
        interval = rate_interval(agg, sigmas, model_sampling)
        return EMPTY_WINDOW if interval is None else window_covering(*interval, sigmas.detach().cpu())
    high, low = _sigma_span(agg.window_unit, agg.window_start, agg.window_end, model_sampling)
    return window_from_sigmas(high, low, sigmas.detach().cpu())


def rate_interval(agg: AggregationSettings, sigmas: torch.Tensor, model_sampling,
                  window: StepWindow | None = None) -> tuple[float, float] | None:
    """The noise interval (sigma_high, sigma_low) over which Spherical Aggregate's "per noise interval"
    strength spreads the base's retained share (None: the window holds no step).

    Percent and sigma windows: the window's noise levels, the high end clipped to sigmas[1] (step 0
    never aggregates, so no aggregation can act above it) and the low end to the model's sigma_min (log
    sigma is unbounded at 0). The window is then every step overlapping the interval (window_covering),
    so the log-sigma spans of its steps add up to the whole interval at every step count. Steps windows:
    the span of the window's own steps (this differs between step counts, as steps windows do)."""
    s = [float(v) for v in sigmas]
    floor = float(getattr(model_sampling, "sigma_min", 0.0)) or 1e-4
    if agg.window_unit == "steps":
        if window is None or window.empty:
            return None
        high, low = s[window.start], max(s[window.end + 1], floor)
    else:
        if len(s) < 3:
            return None
        high, low = _sigma_span(agg.window_unit, agg.window_start, agg.window_end, model_sampling)
        high, low = min(high, s[1]), max(low, floor)
    return (high, low) if high > low > 0 else None
