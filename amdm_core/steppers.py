"""Sampler steps for the host-free loop. A stepper advances ONE member by one step.

The ComfyUI layer plugs any host sampler in by implementing the same two methods (see
nodes/host_stepper.py); the built-ins here are exact k-diffusion Euler and Euler ancestral.
Euler in k-space is DDIM with eta = 0 in VP space (tests/core/test_steppers.py proves it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

from .policies import step_seed

Denoiser = Callable[..., torch.Tensor]          # (x, sigma[B], **kw) -> denoised x0 prediction
NoiseSource = Callable[[int, int, torch.Tensor], torch.Tensor]   # (step, stream, like) -> noise
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]  # (step, denoised, x)


@dataclass
class StepResult:
    """A member's state after one step, split into its deterministic part and added noise."""
    state: torch.Tensor          # the post-step state at sigma_next (noise included)
    mean: torch.Tensor           # its deterministic part (== state for deterministic steps)
    mean_sigma: float            # noise level the mean sits at (sigma_next, or sigma_down)

    @property
    def noise(self) -> torch.Tensor:
        return self.state - self.mean


class Stepper(Protocol):
    stochastic: bool             # adds fresh noise in a step
    separates_noise: bool        # StepResult.mean is the pre-noise part (enables shared-noise mode)

    def step(self, denoise: Denoiser, x: torch.Tensor, sigma: float, sigma_next: float,
             index: int, stream: int) -> StepResult: ...

    def run(self, denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, first_index: int,
            stream: int, callback: Optional[StepCallback] = None) -> torch.Tensor: ...


def seeded_noise(seed: int) -> NoiseSource:
    """Noise for (step, stream) from its own generator: reproducible, independent per stream."""
    def source(index: int, stream: int, like: torch.Tensor) -> torch.Tensor:
        g = torch.Generator(device="cpu").manual_seed(step_seed(seed, index, stream))
        return torch.randn(like.shape, generator=g, dtype=torch.float32).to(like.device, like.dtype)
    return source


def _sigma_in(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return x.new_ones([x.shape[0]]) * sigma


def _to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    return (x - denoised) / sigma


def ancestral_sigmas(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) of an ancestral step (k-diffusion's get_ancestral_step)."""
    if not eta or sigma_next == 0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - up ** 2), up


class _LoopRun:
    def run(self, denoise, x, sigmas, first_index, stream, callback=None):
        for i in range(len(sigmas) - 1):
            res = self.step(denoise, x, float(sigmas[i]), float(sigmas[i + 1]), first_index + i, stream)
            x = res.state
            if callback is not None:
                callback(first_index + i, getattr(self, "last_denoised", x), x)
        return x


class EulerStepper(_LoopRun):
    """k-diffusion Euler (== DDIM eta 0); sigmas may be floats or 0-d tensors (as the host passes)."""
    stochastic = False
    separates_noise = True

    def step(self, denoise, x, sigma, sigma_next, index, stream):
        denoised = denoise(x, _sigma_in(x, sigma))
        self.last_denoised = denoised
        d = _to_d(x, sigma, denoised)
        nxt = x + d * (sigma_next - sigma)
        return StepResult(nxt, nxt, sigma_next)


class EulerAncestralStepper(_LoopRun):
    """k-diffusion Euler ancestral with an explicit noise source (per step and stream)."""
    stochastic = True
    separates_noise = True

    def __init__(self, noise: NoiseSource, eta: float = 1.0, s_noise: float = 1.0):
        self.noise, self.eta, self.s_noise = noise, eta, s_noise

    def step(self, denoise, x, sigma, sigma_next, index, stream):
        denoised = denoise(x, _sigma_in(x, sigma))
        self.last_denoised = denoised
        down, up = ancestral_sigmas(sigma, sigma_next, self.eta)
        d = _to_d(x, sigma, denoised)
        mean = x + d * (down - sigma)
        if sigma_next > 0 and up > 0:
            return StepResult(mean + self.noise(index, stream, x) * self.s_noise * up, mean, down)
        return StepResult(mean, mean, down)
