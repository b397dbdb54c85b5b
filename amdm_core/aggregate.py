"""Spherical aggregation of member states (per sample, norms in fp32)."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .weights import _as_floats, omegas_from_weights

from .policies import AGGREGATION_MODES  # noqa: F401  (re-exported)
_SMALL_ANGLE = 1e-4


def batch_norm(v: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm in fp32, shaped [B, 1, 1, ...] for broadcasting."""
    return v.float().flatten(1).norm(dim=1).view(-1, *([1] * (v.ndim - 1)))


def slerp2(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Angle-aware interpolation from a (tau=0) to b (tau=1), per sample, in fp32.

    Directions follow the great circle; the norm is interpolated linearly. Identity for a == b.
    """
    a32, b32 = a.float(), b.float()
    na, nb = batch_norm(a32), batch_norm(b32)
    ua = a32 / na.clamp_min(1e-30)
    ub = b32 / nb.clamp_min(1e-30)
    cos = (ua * ub).flatten(1).sum(1).clamp(-1.0, 1.0).view_as(na)
    theta = torch.acos(cos)
    sin_t = torch.sin(theta)
    small = theta < _SMALL_ANGLE
    safe_sin = torch.where(small, torch.ones_like(sin_t), sin_t)
    sa = torch.where(small, torch.full_like(theta, 1.0 - tau), torch.sin((1.0 - tau) * theta) / safe_sin)
    sb = torch.where(small, torch.full_like(theta, tau), torch.sin(tau * theta) / safe_sin)
    direction = sa * ua + sb * ub
    # theta == pi (antiparallel) has no unique great circle: the formula above stays finite
    # (sin(pi) is tiny but non-zero in fp32); renormalise so the output norm is still exact.
    dnorm = batch_norm(direction)
    direction = torch.where(dnorm > 0, direction / dnorm.clamp_min(1e-30), ua)
    return direction * ((1.0 - tau) * na + tau * nb)


def spherical_aggregate(states: Sequence[torch.Tensor], weights: Sequence[float],
                        mode: str = "spherical") -> torch.Tensor:
    """Combine K member states (same shape [B, ...]) with spherical weights.

    "spherical": sum_k w_k x_k, exactly as paper and reference code (norm-preserving only for
      near-orthogonal inputs: identical inputs are scaled by sum_k w_k).
    "slerp": nested angle-aware interpolation with tau_k = (2/pi) acos(omega_k); equals
      "spherical" for orthogonal equal-norm inputs and is the identity for identical inputs.
    Weights are used as given (pass them through spherical_weights first for sum of squares 1).
    The result has the dtype of states[0]; arithmetic is done in fp32.
    """
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"aggregation mode {mode!r} is unknown; use one of {AGGREGATION_MODES}")
    if len(states) == 0:
        raise ValueError("no states to aggregate")
    w = _as_floats(weights, "weights")
    if len(w) != len(states):
        raise ValueError(f"{len(states)} states but {len(w)} weights; give one weight per state")
    shape = states[0].shape
    for i, s in enumerate(states):
        if s.shape != shape:
            raise ValueError(f"state {i} has shape {tuple(s.shape)}, state 0 has {tuple(shape)}")
    dtype = states[0].dtype
    if mode == "spherical":
        out = states[0].float() * w[0]
        for wk, xk in zip(w[1:], states[1:]):
            out = out + xk.float() * wk
        return out.to(dtype)
    agg = states[0].float()
    for om, xk in zip(omegas_from_weights(w), states[1:]):
        tau = (2.0 / math.pi) * math.acos(min(1.0, max(0.0, om)))
        if tau == 0.0:
            continue  # this member has weight 0: it does not move the aggregate
        agg = slerp2(agg, xk, tau)
    # The nested form leaves the overall scale at 1; the weights' norm scales the result
    # (1 for spherical weights), so that slerp and spherical agree on orthogonal inputs.
    total = math.sqrt(sum(v * v for v in w))
    return (agg * total).to(dtype)
