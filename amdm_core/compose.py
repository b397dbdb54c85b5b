"""Prediction-space composition at ONE shared state (not AMDM): the simpler cooperation modes.

These combine the members' denoised (x0) predictions at the same x and sigma, so they work with
every sampler as a single trajectory. Linear in x0 <=> linear in eps at fixed (x, sigma).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .policies import COMPOSE_MODES  # noqa: F401  (re-exported)


def compose_predictions(cfg_results: Sequence[torch.Tensor], unconds: Sequence[torch.Tensor] | None,
                        weights: Sequence[float], mode: str = "composable") -> torch.Tensor:
    """Combine K members' predictions made at the same state.

    "average": sum_k w_k D_k / sum_k w_k, D_k = member k's CFG result.
    "composable" (Liu et al. 2022, one model per concept): mean_k(u_k) + sum_k w_k (D_k - u_k), where
      u_k is member k's unconditional prediction and D_k - u_k = cfg_k (c_k - u_k) its guidance term;
      with w_k = 1 every member's guidance counts fully, as in composable diffusion.
    """
    if mode not in COMPOSE_MODES:
        raise ValueError(f"compose mode {mode!r} is unknown; use one of {COMPOSE_MODES}")
    if len(cfg_results) != len(weights) or not cfg_results:
        raise ValueError(f"{len(cfg_results)} predictions but {len(weights)} weights")
    w = [float(v) for v in weights]
    if any(v < 0 for v in w):
        raise ValueError(f"weights {w} must be >= 0")
    if mode == "average":
        total = sum(w)
        if total <= 0:
            raise ValueError("all weights are zero; give at least one member a positive weight")
        out = cfg_results[0] * (w[0] / total)
        for wk, d in zip(w[1:], cfg_results[1:]):
            out = out + d * (wk / total)
        return out
    if unconds is None or len(unconds) != len(cfg_results):
        raise ValueError("composable mode needs each member's unconditional prediction")
    out = sum(unconds) / len(unconds)
    for wk, d, u in zip(w, cfg_results, unconds):
        out = out + (d - u) * wk
    return out
