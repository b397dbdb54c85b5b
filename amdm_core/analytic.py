"""Analytic denoisers: exact posterior means for Gaussian data, for demos and exact tests."""
from __future__ import annotations

import torch


def gaussian_denoiser(mean: torch.Tensor, std: float):
    """Exact denoiser for data ~ N(mean, std^2 I): E[x0 | x] at noise level sigma (k-space)."""
    def denoise(x, sigma, **_):
        # fp32 at least: sigma^2 overflows fp16 above ~256
        dt = torch.promote_types(x.dtype, torch.float32)
        s2 = torch.as_tensor(sigma, device=x.device).reshape(-1, *([1] * (x.ndim - 1))).to(dt) ** 2
        return ((std ** 2 * x.to(dt) + s2 * mean.to(x.device, dt)) / (std ** 2 + s2)).to(x.dtype)
    return denoise
