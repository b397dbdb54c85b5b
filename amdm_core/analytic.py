"""Analytic denoisers: exact posterior means for Gaussian data, for demos and exact tests."""
from __future__ import annotations

import torch


def gaussian_denoiser(mean: torch.Tensor, std: float):
    """Exact denoiser for data ~ N(mean, std^2 I): E[x0 | x] at noise level sigma (k-space)."""
    def denoise(x, sigma, **_):
        s2 = torch.as_tensor(sigma, device=x.device).reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) ** 2
        return (std ** 2 * x + s2 * mean.to(x.dtype)) / (std ** 2 + s2)
    return denoise
