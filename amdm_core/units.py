"""Unit conversions: k-diffusion (sigma) space <-> VP units, and resolution-independent step sizes.

ComfyUI's eps/v models use x_k = x_0 + sigma * eps, i.e. x_k = x_vp * sqrt(1 + sigma^2); the paper and
reference code work on VP latents x_vp. Distances (the deviation step) must be taken in VP units.
"""
from __future__ import annotations

import math

import torch

REFERENCE_ELEMENTS = 4 * 64 * 64  # one SD1.x latent at 512x512: the resolution of the reference's p

# Units of a deviation step (its L2 distance in VP units for samples of n elements):
#   "per_sqrt_n":         step * sqrt(n)   resolution-independent (0.35 ~ p = 45 at 512x512 only)
#   "absolute":           step             an L2 distance as such
#   "per_sqrt_reference": step * 128       p / 128: the reference code's fixed p at every resolution
from .policies import STEP_SCALES  # noqa: F401  (re-exported)


def vp_scale(sigma) -> torch.Tensor | float:
    """sqrt(1 + sigma^2): the factor between k-space and VP units at noise level sigma."""
    if isinstance(sigma, torch.Tensor):
        return torch.sqrt(1.0 + sigma.double() ** 2).to(torch.float32)
    return math.sqrt(1.0 + float(sigma) ** 2)


def to_vp(x: torch.Tensor, sigma) -> torch.Tensor:
    """k-diffusion state at sigma -> VP units (x / sqrt(1 + sigma^2))."""
    return x / _broadcast(vp_scale(sigma), x)


def from_vp(x: torch.Tensor, sigma) -> torch.Tensor:
    """VP units -> k-diffusion state at sigma (x * sqrt(1 + sigma^2))."""
    return x * _broadcast(vp_scale(sigma), x)


def _broadcast(scale, x: torch.Tensor):
    if isinstance(scale, torch.Tensor) and scale.ndim == 1 and scale.numel() == x.shape[0] > 1:
        return scale.to(x.device).view(-1, *([1] * (x.ndim - 1)))
    if isinstance(scale, torch.Tensor):
        return scale.to(x.device).reshape(()) if scale.numel() == 1 else scale.to(x.device)
    return scale


def elements_per_sample(x: torch.Tensor) -> int:
    """n: the number of elements of one sample (all dimensions but the batch)."""
    return int(x[0].numel())


def step_to_absolute(step: float, n: int) -> float:
    """Resolution-independent step (per sqrt(n)) -> absolute L2 distance for samples of n elements."""
    return float(step) * math.sqrt(n)


def step_from_reference(p: float, n: int = REFERENCE_ELEMENTS) -> float:
    """The reference code's absolute p (VP units, 512x512 SD1.x latents) -> step per sqrt(n).

    p = 45 -> 0.3516, p = 55 -> 0.4297 (sqrt(16384) = 128).
    """
    return float(p) / math.sqrt(n)


def step_length(step: float, scale: str, n: int) -> float:
    """The L2 distance (VP units) of a deviation step given in `scale` units, for samples of n elements.

    The reference code's p is an absolute distance whatever the resolution; its numbers were tuned at
    512x512 (n = REFERENCE_ELEMENTS, sqrt(n) = 128). "per_sqrt_reference" keeps that: step = p / 128
    (step_from_reference(p)) moves p at every n, so 0.3516 is p = 45 on 64x64 and on 128x128 latents,
    where "per_sqrt_n" would move 45 and 90. In the per-sqrt(n) unit that step is p / sqrt(n)
    (step_from_reference(p, n)).
    """
    if scale == "per_sqrt_n":
        return step_to_absolute(step, n)
    if scale == "per_sqrt_reference":
        return step_to_absolute(step, REFERENCE_ELEMENTS)
    if scale == "absolute":
        return float(step)
    raise ValueError(f"step scale {scale!r} is unknown; use one of {STEP_SCALES}")
