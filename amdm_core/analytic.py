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


def flow_gaussian_denoiser(mean: torch.Tensor, std: float, noise_scale: float = 1.0):
    """Exact denoiser for data ~ N(mean, std^2 I) in flow parameterization (model_sampling CONST):
    x = (1 - sigma) x0 + sigma * s * eps, sigma in [0, 1], s = noise_scale. Gaussian conditioning
    (Cov(x0, x) = (1 - sigma) std^2, Var x = (1 - sigma)^2 std^2 + (s sigma)^2) gives
        E[x0 | x] = (std^2 (1 - sigma) x + (s sigma)^2 mean) / ((1 - sigma)^2 std^2 + (s sigma)^2),
    finite at sigma = 1 (= mean). With x = (1 - sigma) x_k it is gaussian_denoiser at s sigma / (1 - sigma)."""
    def denoise(x, sigma, **_):
        dt = torch.promote_types(x.dtype, torch.float32)
        t = torch.as_tensor(sigma, device=x.device).reshape(-1, *([1] * (x.ndim - 1))).to(dt)
        a, b2 = 1.0 - t, (noise_scale * t) ** 2
        out = (std ** 2 * a * x.to(dt) + b2 * mean.to(x.device, dt)) / (std ** 2 * a ** 2 + b2)
        return out.to(x.dtype)
    return denoise
