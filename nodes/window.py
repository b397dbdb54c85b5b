"""Resolve the user's window (steps, sigma or percent of the noise range) on the actual sigmas."""
from __future__ import annotations

import torch

from ..amdm_core import StepWindow, window_from_sigmas, window_from_steps
from .settings import AggregationSettings


def resolve_window(agg: AggregationSettings, sigmas: torch.Tensor, model_sampling) -> StepWindow:
    """Steps are indices into the sigmas of this run; sigma and percent are absolute noise levels
    (percent as ComfyUI's start/end percent: 0 = the model's highest noise, 1 = none)."""
    n_steps = len(sigmas) - 1
    if agg.window_unit == "steps":
        return window_from_steps(int(round(agg.window_start)), int(round(agg.window_end)), n_steps)
    if agg.window_unit == "sigma":
        high, low = float(agg.window_start), float(agg.window_end)
    else:
        high = float(model_sampling.percent_to_sigma(float(agg.window_start)))
        low = float(model_sampling.percent_to_sigma(float(agg.window_end)))
        if agg.window_start <= 0:
            high = float("inf")      # percent 0 means "from the very start", whatever sigma_max is
    return window_from_sigmas(high, low, sigmas.detach().cpu())
