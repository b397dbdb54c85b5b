"""Per-family conversion between a sampler's state and VP units (host-free).

AMDM works in VP units: a state v = cos(theta) * y0 + sin(theta) * eps, where y0 is the data in the
model's own normalisation (unit variance per element) and eps ~ N(0, I). Spherical aggregation with
sum w^2 = 1 keeps the variance of independent such states, and the deviation step is a distance in
these units (units.step_length). A sampler keeps a different state per model family; each family
below is one scalar per noise level, scale(sigma), with

    v = x / scale(sigma)    (to_vp)        x = v * scale(sigma)    (from_vp)

"Unit variance" below means: v has per-element variance 1 when the data x0 has the per-element
variance the model assumes (1, or sigma_data^2 for EDM-type models) and eps is independent unit
Gaussian noise. Every family is also the eps family at an equivalent k-diffusion noise level
eps_sigma(sigma) (tan(theta) in the formula above), on data in the model's normalisation.

eps (SD1.x, SDXL, any ModelSamplingDiscrete eps/v model; also V_PREDICTION_DDPM): the state is the
  k-diffusion state x = x0 + sigma * eps, so Var x = 1 + sigma^2 and
      scale = sqrt(1 + sigma^2),   eps_sigma = sigma.
  (what the core always did: units.vp_scale; the VP state is also the network input c_in * x.)

flow (model_sampling CONST: SD3, FLUX, Qwen-Image, Wan, ...; sigma in [0, 1], s = noise_scale):
  x = (1 - sigma) * x0 + sigma * s * eps, so Var x = (1 - sigma)^2 + (s * sigma)^2 and
      scale = sqrt((1 - sigma)^2 + (s * sigma)^2),   eps_sigma = s * sigma / (1 - sigma).
  Derivation: x / (1 - sigma) = x0 + sigma_k * eps is the k-diffusion state at
  sigma_k = s * sigma / (1 - sigma), and its eps-family VP state is
      x / (1 - sigma) / sqrt(1 + sigma_k^2) = x / sqrt((1 - sigma)^2 + (s * sigma)^2),
  so flow members aggregate exactly as the same trajectory mapped to k-diffusion would. Unlike the
  k-space map this stays finite at sigma = 1 (scale = s: pure noise), where FLUX-type schedules start.
  The Euler step on flow states is the Euler step on the mapped k-states (both are DDIM), so a run
  in flow units equals the mapped eps run (tests/core/test_flow_units.py).

edm (ModelSamplingContinuousEDM / ModelSamplingContinuousV with sigma_data = sd, e.g. Playground
  v2.5 sd = 0.5): x = x0 + sigma * eps with the model's data std sd (its c_in = 1 / sqrt(sigma^2 + sd^2)
  is 1 / std of x), so Var x = sd^2 + sigma^2 and
      scale = sqrt(sd^2 + sigma^2),   eps_sigma = sigma / sd.
  Derivation: x / scale = cos(theta) * (x0 / sd) + sin(theta) * eps with tan(theta) = sigma / sd:
  the eps-family VP state of the normalised data y0 = x0 / sd at k-sigma sigma / sd (alpha_bar =
  sd^2 / (sd^2 + sigma^2)). "Unit variance" here means unit variance for data of std sd; for sd = 1
  this is the eps scale. At sigma -> 0 the VP state is x0 / sd, not x0. The network input c_in * x
  is exactly this VP state.

rflow (COSMOS_RFLOW with ModelSamplingCosmosRFlow, Cosmos Predict2): ComfyUI keeps the k-diffusion
  state x = x0 + sigma * eps (noise_scaling is sigma * noise + latent, inverse_noise_scaling the
  identity, sigma in [0.002, 80]) and only the network sees the rectified-flow state
  x * (1 - t) = x / (1 + sigma) at t = sigma / (1 + sigma). Hence
      scale = sqrt(1 + sigma^2),   eps_sigma = sigma,
  the eps scale, and the same as flow units (s = 1) applied to that rectified-flow state at t:
  sqrt((1 - t)^2 + t^2) * (1 + sigma) = sqrt(1 + sigma^2). It differs from eps only in having no
  discrete VP schedule.

The reference code's lagged mu target (Deviation target "reference") is built from a discrete
DDPM schedule's alphas and stays eps-only: StateUnits.discrete is True for the eps family alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .policies import STATE_FAMILIES, check_one_of
from .units import _broadcast, vp_scale

_OWNER = {"noise_scale": "flow", "sigma_data": "edm"}    # the family each parameter belongs to


@dataclass(frozen=True)
class StateUnits:
    """A family's map between its sampler state and VP units (see the module docstring).

    family: one of STATE_FAMILIES; noise_scale: flow only (model_sampling.noise_scale); sigma_data:
    edm only (model_sampling.sigma_data). Build it with eps_units(), flow_units(), edm_units() or
    rflow_units(). sigma may be a float, a 0-d tensor or a per-sample tensor [B] everywhere.
    """
    family: str = "eps"
    noise_scale: float = 1.0
    sigma_data: float = 1.0

    def __post_init__(self):
        check_one_of("family", self.family, STATE_FAMILIES)
        for name in ("noise_scale", "sigma_data"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"'{name}' = {v} must be a finite number > 0")
            if v != 1.0 and self.family != _OWNER[name]:
                raise ValueError(f"'{name}' applies to the {_OWNER[name]!r} family only, not to {self.family!r}")
            object.__setattr__(self, name, v)

    @property
    def discrete(self) -> bool:
        """The family samples a discrete VP (DDPM) schedule: the reference mu target is defined."""
        return self.family == "eps"

    def scale(self, sigma) -> torch.Tensor | float:
        """The factor between the family's state and VP units at noise level sigma (state = vp * scale)."""
        if self.family in ("eps", "rflow"):
            return vp_scale(sigma)           # the eps scale, exactly as before
        if isinstance(sigma, torch.Tensor):
            return torch.sqrt(self._variance(sigma.double())).to(torch.float32)
        return math.sqrt(self._variance(float(sigma)))

    def _variance(self, s):
        if self.family == "flow":
            return (1.0 - s) ** 2 + (self.noise_scale * s) ** 2
        return self.sigma_data ** 2 + s ** 2                           # edm

    def to_vp(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """The family's state at sigma -> VP units (x / scale(sigma))."""
        return x / _broadcast(self.scale(sigma), x)

    def from_vp(self, v: torch.Tensor, sigma) -> torch.Tensor:
        """VP units -> the family's state at sigma (v * scale(sigma))."""
        return v * _broadcast(self.scale(sigma), v)

    def eps_sigma(self, sigma):
        """The equivalent k-diffusion noise level: to_vp(x, sigma) is the eps-family VP state at
        eps_sigma(sigma) of the data in the model's normalisation (inf for flow at sigma = 1)."""
        if self.family in ("eps", "rflow"):
            return sigma
        if self.family == "edm":
            return sigma / self.sigma_data
        if isinstance(sigma, torch.Tensor):
            return self.noise_scale * sigma / (1.0 - sigma)
        s = float(sigma)
        return math.inf if s >= 1.0 else self.noise_scale * s / (1.0 - s)


EPS_UNITS = StateUnits("eps")


def eps_units() -> StateUnits:
    """eps / v-prediction models on a discrete VP schedule (SD1.x, SDXL): sqrt(1 + sigma^2)."""
    return EPS_UNITS


def flow_units(noise_scale: float = 1.0) -> StateUnits:
    """Flow-matching models (model_sampling CONST): sqrt((1 - sigma)^2 + (noise_scale * sigma)^2)."""
    return StateUnits("flow", noise_scale=noise_scale)


def edm_units(sigma_data: float = 1.0) -> StateUnits:
    """EDM-type continuous models (ModelSamplingContinuousEDM / V): sqrt(sigma_data^2 + sigma^2)."""
    return StateUnits("edm", sigma_data=sigma_data)


def rflow_units() -> StateUnits:
    """COSMOS_RFLOW: k-diffusion states, sqrt(1 + sigma^2), no discrete schedule."""
    return StateUnits("rflow")
