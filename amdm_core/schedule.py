"""Discrete VP noise schedules (SD-like) and the reference code's one-step-lagged mean."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DiscreteSchedule:
    """A 1000-step (or other) discrete VP schedule given by its cumulative alphas.

    sigma_t = sqrt((1 - abar_t) / abar_t) is the k-diffusion noise level of training step t.
    """
    alphas_cumprod: torch.Tensor  # float64, [T]

    @classmethod
    def scaled_linear(cls, beta_start: float = 0.00085, beta_end: float = 0.012,
                      steps: int = 1000) -> "DiscreteSchedule":
        """SD-1.x / SDXL betas: linspace(sqrt(start), sqrt(end))^2."""
        betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def from_sigmas(cls, sigmas: torch.Tensor) -> "DiscreteSchedule":
        """Rebuild the schedule from a host's per-step sigma table (abar = 1 / (1 + sigma^2))."""
        s = sigmas.detach().double().cpu()
        return cls(1.0 / (1.0 + s * s))

    @property
    def sigmas(self) -> torch.Tensor:
        return ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    def timestep(self, sigma: float) -> int:
        """Nearest training step in log-sigma (ComfyUI's ModelSamplingDiscrete.timestep)."""
        log_sigmas = self.sigmas.log()
        return int((math.log(float(sigma)) - log_sigmas).abs().argmin())

    def alpha(self, t: int) -> float:
        """One-step alpha_t = 1 - beta_t of the training grid."""
        ac = self.alphas_cumprod
        return float(ac[t] / ac[t - 1]) if t > 0 else float(ac[0])

    def alpha_bar(self, t: int) -> float:
        return float(self.alphas_cumprod[t])

    def ddim_uniform_sigmas(self, steps: int) -> torch.Tensor:
        """The grid of ComfyUI's ddim_uniform scheduler, as k-sigmas, descending, ending at 0.

        Training indices 1, 1 + d, 1 + 2d, ... while below T, with stride d = max(T // steps, 1),
        taken from the lowest noise up, then reversed, then sigma 0. Every such index is kept, so
        when 1 + d * steps < T the run has one step more than asked (30 steps: d = 33, indices
        991..1, 31 steps; 7 steps: 8); steps >= T gives every index 1..T-1. Otherwise it is
        diffusers DDIM "leading" with offset 1 (981, 961, ... for 50 steps), exactly `steps` steps.
        If sigma at index 1 is ~0 (abs 1e-5) the host counts it as the final sigma instead: the
        stride is T // (steps + 1) and no extra 0 is appended.
        """
        if steps < 1:
            raise ValueError(f"steps = {steps}; a schedule needs at least one step")
        sig = self.sigmas
        T = sig.shape[0]
        ends_on_index_1 = T > 1 and abs(float(sig[1])) <= 1e-5
        stride = max(T // (steps + 1 if ends_on_index_1 else steps), 1)
        s = sig[list(range(1, T, stride))[::-1]].float()
        return s if ends_on_index_1 else torch.cat([s, s.new_zeros(1)])


def code_exact_mu(x_in_vp: torch.Tensor, eps_prev: torch.Tensor, alpha: float,
                  alpha_bar: float) -> torch.Tensor:
    """The reference code's compute_mu: 1/sqrt(a) x - (1 - a) / (sqrt(1 - abar) sqrt(a)) eps.

    Evaluated (as the code does) with the state entering the step, the guided eps of the previous
    step and the one-step alpha of the previous step's training timestep: effectively the model's
    own pre-step state, not the paper's next-step mean.
    """
    c_x = 1.0 / math.sqrt(alpha)
    c_eps = (1.0 - alpha) / (math.sqrt(1.0 - alpha_bar) * math.sqrt(alpha))
    return (x_in_vp.float() * c_x - eps_prev.float() * c_eps).to(x_in_vp.dtype)


def code_exact_coefficients(schedule: DiscreteSchedule, t: int) -> tuple[float, float]:
    """(c_x, c_eps) of code_exact_mu at training step t (regression values: t=981 -> 1.0059, 0.0118)."""
    a, ab = schedule.alpha(t), schedule.alpha_bar(t)
    return 1.0 / math.sqrt(a), (1.0 - a) / (math.sqrt(1.0 - ab) * math.sqrt(a))
