"""Superposition of diffusion models (SuperDiff: Skreta et al. 2024, "The Superposition of Diffusion
Models Using the Itô Density Estimator", arXiv 2412.17762), host-free, with its own stepper.

K >= 2 members share ONE trajectory. Each step combines their noise predictions with per-sample
weights kappa that come from each member's log-density at the current state, tracked along the SDE
actually taken (no divergence, no extra evaluations). The estimator is tied to that SDE step, so
this module steps itself; a host sampler cannot be plugged in.

Coordinates: k-diffusion / VE, x = x0 + sigma * eps. A member is a Denoiser (x, sigma[B]) -> x0
prediction (the pack's convention, CFG inside unless `uncond` is given); its noise prediction is
v_k = (x - D_k) / sigma, and its score is -v_k / sigma. Flow members run in these coordinates
through k_space() (x_k = x / (1 - sigma), sigma_k = s sigma / (1 - sigma)).

The step (reverse-time SDE of the VE process, Euler-Maruyama, dsigma = sigma_next - sigma < 0):
    dx = 2 dsigma v(kappa) + sqrt(2 |dsigma| sigma) z,   z ~ N(0, I) from a seeded NoiseSource,
    v(kappa) = sum_k kappa_k v_k                               (members with CFG inside), or
    v(kappa) = v_u + cfg (sum_k kappa_k v_k - v_u)             (shared CFG: the reference's form).
The step to sigma_next = 0 is deterministic: the denoised combination sum_k kappa_k D_k (with shared
CFG: D_u + cfg (sum_k kappa_k D_k - D_u)).

Itô log-density of member k (derivation). q_k(x, sigma) is member k's marginal density. The VE
forward process gives the heat equation d/dsigma log q = sigma (Lap log q + |grad log q|^2). Along the
reverse SDE the noise has quadratic variation 2 sigma |dsigma| per dimension, so Itô's formula with
dsigma = -|dsigma| reads
    d log q_k = sigma dsigma (Lap log q_k + |s_k|^2) + <s_k, dx> + sigma |dsigma| Lap log q_k
              = -sigma |dsigma| |s_k|^2 + <s_k, dx>                 (the Laplacians cancel)
and with s_k = -v_k / sigma
    ll_k += -(|dsigma| / sigma) |v_k|^2 - <dx, v_k> / sigma,
sums over every non-batch dimension (4-D images and 5-D video latents alike). It holds for any drift,
so for the combined one too; all members start at ll = 0 (they share the prior at sigma_max).
The deterministic last step has no noise and does not update ll.

OR (mixture, sample from q_1 or q_2 or ...): kappa = softmax(T * ll + log_prior) per sample.
  The reference code computes softmax(T * (ll + log_prior)); pass log_prior * T to reproduce it.
AND (all members' densities equally high): kappa solves, per sample, the linear conditions that after
  the step every ll_k + log_prior_k is equal (with sum_k kappa_k = 1). dx is affine in kappa,
      dx = dx_0 + 2 dsigma c sum_j kappa_j v_j,   c = cfg (1 without shared CFG),
      dx_0 = 2 dsigma (1 - c) v_u + sqrt(2 |dsigma| sigma) z,
  so with G_kj = <v_k, v_j>, a_k = -(|dsigma|/sigma) |v_k|^2 - <dx_0, v_k>/sigma and one free level mu,
      2 dsigma c sum_j G_kj kappa_j + mu = sigma (ll_k + log_prior_k + a_k)  for every k,  sum_k kappa_k = 1,
  a (K+1) x (K+1) system solved in float64 by its pseudo-inverse (least squares where singular, e.g.
  identical members: then kappa is uniform). For K = 2 it is the reference's closed form
      kappa_1 = [|dsigma| <v_2 - v_1, v_2 + v_1> - <dx_ind, v_1 - v_2> + sigma g] / (2 dsigma c |v_1 - v_2|^2),
  dx_ind = the step with member 2 alone, g = (ll_1 + b_1) - (ll_2 + b_2) the current gap (0 while
  the levels are equal; keeping it pulls rounding drift back). K > 2 is the same system (any K).
  At the deterministic last step kappa equalises the expected increments (the same system with z = 0
  and dsigma = -sigma). AND's kappa is not limited to [0, 1].

Cost: K evaluations per step (K + 1 with shared CFG) and O(K^2) reductions over the state.
Euler-Maruyama inflates the variance of each step by about 3 (sigma - sigma_next)^2; the reference
runs 1000 steps. Use many steps (fine grids), or expect a noisier sample than an ODE sampler's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from .policies import SUPERPOSE_MODES, check_one_of
from .state_units import EPS_UNITS, StateUnits
from .steppers import Denoiser, NoiseSource

# (step, x after the step, kappa [B, K], ll [B, K]): called after every step, e.g. for progress
StepHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass
class SuperposeTrace:
    """What a superposition run did: per step its sigma pair, kappa [B, K] and the log-densities
    [B, K] after it (float64), and the evaluations per member (and of the unconditional model)."""
    mode: str
    sigmas: List[float] = field(default_factory=list)
    kappa: List[torch.Tensor] = field(default_factory=list)
    log_density: List[torch.Tensor] = field(default_factory=list)
    evaluations: List[int] = field(default_factory=list)
    uncond_evaluations: int = 0

    @property
    def steps(self) -> int:
        return len(self.kappa)

    @property
    def total_evaluations(self) -> int:
        return sum(self.evaluations) + self.uncond_evaluations


def superpose_evaluations(n_members: int, shared_cfg: bool = False) -> int:
    """Model evaluations per step: one per member, plus the unconditional one with shared CFG."""
    return int(n_members) + (1 if shared_cfg else 0)


def _check_sigmas(sigmas) -> list[float]:
    s = [float(v) for v in (sigmas.flatten() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if len(s) < 2:
        raise ValueError(f"'sigmas' has {len(s)} entries; a schedule needs at least 2 (one step)")
    if not all(math.isfinite(v) for v in s) or s[-1] < 0 or min(s[:-1]) <= 0:
        raise ValueError(f"'sigmas' must be finite, > 0 before the last entry and >= 0 at it; got {s}")
    if any(b >= a for a, b in zip(s, s[1:])):
        raise ValueError("'sigmas' must strictly decrease (the SDE runs from high to low noise)")
    return s


def _check_prior(log_prior, K: int, B: int) -> torch.Tensor:
    if log_prior is None:
        return torch.zeros(B, K, dtype=torch.float64)
    p = torch.as_tensor(log_prior, dtype=torch.float64).cpu()
    if p.ndim == 1:
        p = p.expand(B, K) if p.numel() == K else p
    if p.shape != (B, K) or not torch.isfinite(p).all():
        raise ValueError(f"'log_prior' must be {K} finite values (one per member) or [batch, {K}]; got shape "
                         f"{tuple(p.shape)}")
    return p.clone()


def _check_scalar(name: str, value: float, low: float = 0.0) -> float:
    v = float(value)
    if not math.isfinite(v) or v < low:
        raise ValueError(f"'{name}' = {v} must be a finite number >= {low}")
    return v


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, 1, ...] in like's dtype and device."""
    return t.to(like.device, like.dtype).view(-1, *([1] * (like.ndim - 1)))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product over all non-batch dimensions, in float64, on the CPU: [B]."""
    return (a.double() * b.double()).flatten(1).sum(1).cpu()


def _combine(kappa: torch.Tensor, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    out = parts[0] * _per_sample(kappa[:, 0], parts[0])
    for k in range(1, len(parts)):
        out = out + parts[k] * _per_sample(kappa[:, k], parts[k])
    return out


def _ito_increment(v: torch.Tensor, dx: torch.Tensor, sigma: float, dsigma: float) -> torch.Tensor:
    return -(abs(dsigma) / sigma) * _dot(v, v) - _dot(dx, v) / sigma


def _and_kappa(vs, v_u, cfg, xi, ll, prior, sigma, dsigma) -> torch.Tensor:
    """Solve the AND conditions (module docstring) per sample; vs: K tensors, xi: the step's noise."""
    K, B = len(vs), vs[0].shape[0]
    dx0 = xi if v_u is None else xi + v_u * (2 * dsigma * (1 - cfg))
    gram = torch.stack([torch.stack([_dot(vs[k], vs[j]) for j in range(K)], 1) for k in range(K)], 1)   # [B,K,K]
    a = torch.stack([-(abs(dsigma) / sigma) * gram[:, k, k] - _dot(dx0, vs[k]) / sigma for k in range(K)], 1)
    A = gram * (2 * dsigma * cfg)
    scale = A.abs().flatten(1).amax(1).clamp_min(1e-300).view(B, 1, 1)    # balance the blocks
    M = torch.zeros(B, K + 1, K + 1, dtype=torch.float64)
    M[:, :K, :K] = A / scale
    M[:, :K, K] = 1.0
    M[:, K, :K] = 1.0
    rhs = torch.ones(B, K + 1, 1, dtype=torch.float64)
    rhs[:, :K, 0] = sigma * (ll + prior + a) / scale[:, :, 0]
    return (torch.linalg.pinv(M) @ rhs)[:, :K, 0]


def superpose_sample(denoisers: Sequence[Denoiser], sigmas, x: torch.Tensor, *, noise: NoiseSource,
                     mode: str = "or", temperature: float = 1.0, log_prior=None,
                     uncond: Optional[Denoiser] = None, cfg: float = 1.0, stream: int = 0,
                     on_step: Optional[StepHook] = None) -> tuple[torch.Tensor, SuperposeTrace]:
    """Sample one trajectory from the OR / AND superposition of K >= 2 members (module docstring).

    denoisers: K callables (x, sigma[B]) -> x0 prediction in k-diffusion (VE) units; with CFG inside,
      or conditional-only when `uncond` is given (flow members: wrap them with k_space(...).denoiser).
    sigmas: the run's k-diffusion sigmas, strictly decreasing; the last may be 0 (a deterministic
      final step to the denoised combination).
    x: the state at sigmas[0] (e.g. noise * sigmas[0]), any shape [B, ...] (4-D images, 5-D video).
    noise: NoiseSource (amdm_core.seeded_noise(seed)): step j draws noise(j, stream, x).
    mode: "or" or "and" (SUPERPOSE_MODES). temperature: OR only, >= 0 (kappa = softmax(T ll + log_prior)).
    log_prior: K values (or [B, K]): OR's log prior weights; AND keeps ll_k + log_prior_k equal.
    uncond, cfg: optional shared CFG: one unconditional denoiser, v = v_u + cfg (sum kappa v_k - v_u).
    on_step(j, x, kappa, ll) is called after every step.
    Returns the final state (dtype of x) and a SuperposeTrace.
    """
    K = len(denoisers)
    if K < 2:
        raise ValueError(f"'denoisers' has {K} member(s); superposition needs at least 2")
    check_one_of("mode", mode, SUPERPOSE_MODES)
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("'x' must be a tensor [batch, ...] (the state at sigmas[0])")
    s = _check_sigmas(sigmas)
    T = _check_scalar("temperature", temperature)
    if mode == "and" and T != 1.0:
        raise ValueError(f"'temperature' = {T} applies to mode 'or' only; AND has no temperature")
    cfg = _check_scalar("cfg", cfg)
    if uncond is None and cfg != 1.0:
        raise ValueError(f"'cfg' = {cfg} needs 'uncond' (shared CFG); members with CFG inside take cfg = 1")
    B = x.shape[0]
    prior = _check_prior(log_prior, K, B)
    ll = torch.zeros(B, K, dtype=torch.float64)
    trace = SuperposeTrace(mode=mode, evaluations=[0] * K)
    work = torch.promote_types(x.dtype, torch.float32)        # fp16 states step in fp32
    xs = x.to(work)

    for j in range(len(s) - 1):
        sigma, sigma_next = s[j], s[j + 1]
        sig_in = xs.new_full([B], sigma)
        ds = [den(xs, sig_in).to(work) for den in denoisers]
        d_u = uncond(xs, sig_in).to(work) if uncond is not None else None
        trace.evaluations = [e + 1 for e in trace.evaluations]
        trace.uncond_evaluations += uncond is not None
        vs = [(xs - d) / sigma for d in ds]
        v_u = (xs - d_u) / sigma if d_u is not None else None
        final = sigma_next == 0
        dsigma = -sigma if final else sigma_next - sigma
        xi = torch.zeros_like(xs) if final else \
            noise(j, stream, xs).to(xs.device, work) * math.sqrt(2 * abs(dsigma) * sigma)
        if mode == "or":
            kappa = torch.softmax(ll * T + prior, dim=1)
        else:
            kappa = _and_kappa(vs, v_u, cfg, xi, ll, prior, sigma, dsigma)
        if final:
            d_mix = _combine(kappa, ds)
            xs = d_mix if d_u is None else d_u + (d_mix - d_u) * cfg
        else:
            v_mix = _combine(kappa, vs)
            v = v_mix if v_u is None else v_u + (v_mix - v_u) * cfg
            dx = v * (2 * dsigma) + xi
            ll = ll + torch.stack([_ito_increment(vk, dx, sigma, dsigma) for vk in vs], 1)
            xs = xs + dx
        trace.sigmas.append(sigma)
        trace.kappa.append(kappa)
        trace.log_density.append(ll.clone())
        if on_step is not None:
            on_step(j, xs, kappa, ll)
    return xs.to(x.dtype), trace


@dataclass(frozen=True, eq=False)
class KSpace:
    """A run's sigmas and states mapped to k-diffusion (VE) coordinates, for superpose_sample.

    Build it with k_space(units, sigmas). For the eps, rflow and edm families the host state already
    is x0 + sigma * eps: every map is the identity. For flow (x = (1 - t) x0 + t s eps, t in [0, 1]):
        sigma_k = s t / (1 - t),   x_k = x / (1 - t) = x (s + sigma_k) / s,
    and t = 1 (pure noise, FLUX-type schedules start there) maps to a finite cap (k_space's sigma_cap).
    """
    units: StateUnits
    sigmas: tuple            # the host's sigmas
    k_sigmas: torch.Tensor   # the same in k-diffusion units (float32), for superpose_sample

    @property
    def identity(self) -> bool:
        return self.units.family != "flow"

    def _factor(self, index: int) -> float:
        """x_k / x at sigmas[index] (flow: (s + sigma_k) / s)."""
        s = self.units.noise_scale
        return 1.0 if self.identity else (s + float(self.k_sigmas[index])) / s

    def to_k(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """The host's state at sigmas[index] -> the k-diffusion state at k_sigmas[index]."""
        return x if self.identity else x * self._factor(index)

    def from_k(self, x_k: torch.Tensor, index: int) -> torch.Tensor:
        """The k-diffusion state at k_sigmas[index] -> the host's state at sigmas[index]."""
        return x_k if self.identity else x_k / self._factor(index)

    def denoiser(self, fn: Denoiser) -> Denoiser:
        """A member on host states -> the same member on k-states: D(x_k, sigma_k) = fn(x, sigma), with
        x = from_k(x_k) and sigma the host's own grid value (looked up, no float round trip)."""
        if self.identity:
            return fn
        grid = self.k_sigmas.double()

        def den(x_k, sigma, **kw):
            sk = torch.as_tensor(sigma).double().flatten().cpu()
            idx = [int((grid - v).abs().argmin()) for v in sk]
            factor = torch.tensor([1.0 / self._factor(i) for i in idx], dtype=torch.float64)
            host = torch.tensor([self.sigmas[i] for i in idx], dtype=torch.float32, device=x_k.device)
            x = (x_k.double() * _per_sample(factor, x_k.double())).to(x_k.dtype)
            return fn(x, host, **kw)
        return den


def k_space(units: Optional[StateUnits], sigmas, sigma_cap: Optional[float] = None) -> KSpace:
    """Map a run's sigmas (in the members' own units) to k-diffusion sigmas (see KSpace).

    units: the members' StateUnits (None = eps). For flow, a sigma of 1 maps to sigma_cap (k units);
    None = the geometric continuation of the next two k-sigmas, k1^2 / k2, so the first SDE step has
    the same ratio as the second (Euler-Maruyama needs moderate ratios). Other sigmas must be < 1.
    """
    units = EPS_UNITS if units is None else units
    if not isinstance(units, StateUnits):
        raise ValueError(f"'units' must be a StateUnits (eps_units(), flow_units(), ...), not {type(units).__name__}")
    host = tuple(_check_sigmas(sigmas))
    if units.family != "flow":
        return KSpace(units, host, torch.tensor(host, dtype=torch.float32))
    if any(t > 1.0 for t in host) or any(t >= 1.0 for t in host[1:]):
        raise ValueError(f"flow 'sigmas' must lie in [0, 1], with only the first allowed to be 1; got {list(host)}")
    ks = [units.noise_scale * t / (1.0 - t) if t < 1.0 else math.inf for t in host]
    if math.isinf(ks[0]):
        if sigma_cap is None:
            if len(ks) < 3 or ks[2] <= 0:
                raise ValueError("a flow schedule starting at sigma 1 needs 'sigma_cap' when it has fewer than 2 "
                                 "steps after the first or reaches 0 at its third sigma")
            sigma_cap = ks[1] ** 2 / ks[2]
        cap = _check_scalar("sigma_cap", sigma_cap)
        if cap <= ks[1]:
            raise ValueError(f"'sigma_cap' = {cap} must be above the next k-sigma {ks[1]}")
        ks[0] = cap
    return KSpace(units, host, torch.tensor(ks, dtype=torch.float32))
