"""Deviation optimization: one normalised step of fixed length from the aggregate toward mu."""
from __future__ import annotations

import torch

from .aggregate import batch_norm
from .units import STEP_SCALES, elements_per_sample, step_length

from .policies import DEVIATION_MODES  # noqa: F401  (re-exported)


def deviation_step(x_hat: torch.Tensor, mu: torch.Tensor, step, mode: str = "absolute",
                   scale: str = "per_sqrt_n") -> torch.Tensor:
    """Move x_hat toward mu, per sample: x_hat - L * (x_hat - mu) / ||x_hat - mu||.

    mode "absolute": L = step (the reference code; may pass mu when step > distance),
         "clamped":  L = min(step, distance) (never past mu),
         "relative": L = step * distance (step in [0, 1]: 1 lands on mu, 0.5 the midpoint).
    scale "per_sqrt_n" (default) reads step in resolution-independent units: the distance is
    step * sqrt(n), n = elements of one sample; "absolute" reads it as an L2 distance;
    "per_sqrt_reference" as p / 128, the reference code's fixed p at every n (see step_length).
    The scale does not apply in "relative" mode (a fraction has no unit).
    `step` is a float or a per-sample tensor [B]. Returns x_hat unchanged where x_hat == mu.
    """
    if mode not in DEVIATION_MODES:
        raise ValueError(f"deviation mode {mode!r} is unknown; use one of {DEVIATION_MODES}")
    if scale not in STEP_SCALES:
        raise ValueError(f"step scale {scale!r} is unknown; use one of {STEP_SCALES}")
    if x_hat.shape != mu.shape:
        raise ValueError(f"x_hat {tuple(x_hat.shape)} and mu {tuple(mu.shape)} differ in shape")
    dtype = x_hat.dtype
    diff = x_hat.float() - mu.float()
    dist = batch_norm(diff)
    length = torch.as_tensor(step, dtype=torch.float32, device=x_hat.device)
    if length.ndim == 1:
        length = length.view(-1, *([1] * (x_hat.ndim - 1)))
    if mode != "relative":
        length = length * step_length(1.0, scale, elements_per_sample(x_hat))
    if mode == "clamped":
        length = torch.minimum(length, dist)
    elif mode == "relative":
        length = length * dist
    moved = x_hat.float() - length * diff / dist.clamp_min(1e-30)
    return torch.where(dist > 0, moved, x_hat.float()).to(dtype)
