"""The AMDM sampling loop over K member denoisers (host-free).

Each member keeps its own trajectory. In the window, after every member's own step, the states
are combined in VP units by spherical aggregation and each optimised member is moved from the
aggregate toward its own mean by one deviation step. Helpers run steps 0..end only; after the
window the specified member (index 0) finishes the schedule alone, in one stepper.run call, so
a host sampler keeps its full remaining schedule (and multistep history) there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import torch

from .aggregate import AGGREGATION_MODES, batch_norm, spherical_aggregate
from .deviation import DEVIATION_MODES, STEP_SCALES, deviation_step
from .schedule import DiscreteSchedule, code_exact_mu
from .steppers import Denoiser, StepResult, Stepper
from .state_units import EPS_UNITS, StateUnits
from .units import vp_scale
from .weights import _as_floats, spherical_weights
from .window import StepWindow

from .policies import (MU_TARGETS, OPTIMISED_MEMBERS, STEP_NOISE_POLICIES, check_one_of, check_step,
                       check_step_noise, planned_member_steps)

# (member, step, denoised, state, done, total): called after every member step, for progress
ProgressHook = Callable[[int, int, torch.Tensor, torch.Tensor, int, int], None]


@dataclass(frozen=True)
class Deviation:
    """Deviation optimization settings.

    step: one value for every optimised member, or one per member (member 0 first); read in
      `scale` units (default: per sqrt(n), resolution-independent; 0.35 ~ the reference's p=45 at
      512x512; "per_sqrt_reference" reads p / 128, the reference's p at every resolution).
    target: "faithful" = the member's own un-aggregated post-step mean (the paper's mu);
      "reference" = the reference code's one-step-lagged formula (needs a DiscreteSchedule).
    members: "base" = only the specified member is optimised (paper); helpers keep their own
      state; "all" = every member moves toward its own mu from the aggregate (reference code).
    """
    step: float | Sequence[float] = 0.35
    mode: str = "absolute"
    target: str = "faithful"
    members: str = "base"
    scale: str = "per_sqrt_n"

    def __post_init__(self):
        for name, value, allowed in (("mode", self.mode, DEVIATION_MODES), ("target", self.target, MU_TARGETS),
                                     ("members", self.members, OPTIMISED_MEMBERS), ("scale", self.scale, STEP_SCALES)):
            check_one_of(name, value, allowed)
        for v in (self.step if isinstance(self.step, (list, tuple)) else [self.step]):
            check_step("step", v, self.mode)

    def step_for(self, member: int) -> float:
        if isinstance(self.step, (list, tuple)):
            return float(self.step[member])
        return float(self.step)


@dataclass
class Trace:
    """What a run did: the resolved window, where it aggregated, and what it cost per member."""
    window: StepWindow
    steps: int
    weights: List[float]
    aggregated_steps: List[int] = field(default_factory=list)
    aggregated_sigmas: List[float] = field(default_factory=list)
    norm_ratio: List[float] = field(default_factory=list)     # ||aggregate|| / ||base input||
    aggregated_weights: List[List[float]] = field(default_factory=list)   # weights used, per aggregated step
    evaluations: List[int] = field(default_factory=list)      # denoiser calls per member
    member_steps: List[int] = field(default_factory=list)     # steps taken per member
    planned_member_steps: int = 0

    @property
    def total_evaluations(self) -> int:
        return sum(self.evaluations)


class _Counted:
    """Counts a member's denoiser calls and keeps the first (x, denoised) of the current step."""

    def __init__(self, fn: Denoiser):
        self.fn, self.calls = fn, 0
        self.first = None
        self._want_first = False
        self.last_denoised = None

    def __getattr__(self, name):          # a host stepper reads attributes of the member it drives
        if name == "fn":
            raise AttributeError(name)
        return getattr(self.fn, name)

    def begin_step(self):
        self._want_first, self.first = True, None

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        out = self.fn(x, sigma, **kw)
        if self._want_first:
            self.first, self._want_first = (x, out), False
        self.last_denoised = out
        return out


def active_members(weights: Sequence[float]) -> List[int]:
    """Member 0 always runs; a helper with weight 0 contributes nothing and is never evaluated."""
    return [0] + [k for k in range(1, len(weights)) if weights[k] > 0]


def amdm_sample(denoisers: Sequence[Denoiser], sigmas: torch.Tensor, initial_states: Sequence[torch.Tensor],
                *, weights: Sequence[float], window: StepWindow, stepper: Stepper, mode: str = "spherical",
                deviation: Optional[Deviation] = None, step_noise: str = "independent",
                schedule: Optional[DiscreteSchedule] = None, normalize_weights: bool = True,
                active: Optional[Sequence[Sequence[bool]]] = None,
                on_progress: Optional[ProgressHook] = None,
                units: Optional[StateUnits] = None,
                step_weights: Optional[Sequence[Optional[Sequence[float]]]] = None,
                step_deviation: Optional[Sequence[Optional[float]]] = None,
                normalize_step_weights: Optional[bool] = None) -> tuple[torch.Tensor, Trace]:
    """Run AMDM; returns the specified member's final state (the sampler's own state) and the Trace.

    denoisers[k](x, sigma[B]) -> denoised x0 prediction of member k (CFG inside); member 0 is the
    specified model. initial_states[k] is member k's state at sigmas[0] (independent noise per
    member is the safe default; see README). weights are raw member weights, scaled to unit L2
    norm over the members taking part in a step unless normalize_weights=False (the reference's
    3-model weights are not unit norm).
    step_noise, for stochastic steppers: "independent" = each member draws its own noise and the
    post-noise states are aggregated (variance kept by sum w^2 = 1); "shared" = one draw per step
    for all members, added after aggregating the pre-noise means (needs stepper.separates_noise).
    active[k][j] (optional): member k is active at step j (its noise range). Helpers run only at
    active steps up to the window's end; one that becomes active after step 0 joins from the base
    member's state. The base member must be active at every step. With the "reference" target such
    a helper has no previous step for the lagged mu: on its first step its own eps of that step
    stands in for the previous one (see _target).
    window must be resolved for this run (its end at most the last step), else ValueError.
    units: the members' state family (amdm_core.state_units): how a state at sigma converts to the VP
    units in which states are aggregated and the deviation step is measured. None = eps_units()
    (k-diffusion states, sqrt(1 + sigma^2)); flow_units(noise_scale) for flow models, whose sigmas
    run in [0, 1]. The "reference" mu target needs a discrete eps schedule: other families refuse it.
    step_weights (optional, opt-in): one entry per step, K raw weights used in place of `weights` when
    step j aggregates (None: `weights`), e.g. amdm_core.rate.rate_step_weights, whose weights follow
    a continuous rate over the noise interval so the cumulative pull does not grow with the step
    count. `weights` still decides which helpers run (weight > 0). Normalised over the members taking
    part in the step, as `weights` are (normalize_step_weights None: as normalize_weights; False for
    rate_plan's weights, which are relative to the base's already aggregated state and used as given). None (default) leaves
    every step exactly as before.
    step_deviation (optional, opt-in): one entry per step, a factor on an absolute or clamped deviation
    step's length at that step (None: 1; "relative" steps are fractions and are not scaled), e.g.
    amdm_core.rate.rate_plan's deviation_scale, so the deviation shrinks with the step's aggregation.
    """
    K = len(denoisers)
    if K < 1 or len(initial_states) != K or len(weights) != K:
        raise ValueError(f"need one initial state and one weight per denoiser; got {K} denoisers, "
                         f"{len(initial_states)} states, {len(weights)} weights")
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"aggregation mode {mode!r} is unknown; use one of {AGGREGATION_MODES}")
    if step_noise not in STEP_NOISE_POLICIES:
        raise ValueError(f"step noise policy {step_noise!r} is unknown; use one of {STEP_NOISE_POLICIES}")
    check_step_noise(mode, step_noise, stepper.stochastic, stepper.separates_noise, type(stepper).__name__)
    units = EPS_UNITS if units is None else units
    if not isinstance(units, StateUnits):
        raise TypeError(f"units must be a StateUnits (eps_units(), flow_units(), ...), not {type(units).__name__}")
    if deviation is not None and deviation.target == "reference" and not units.discrete:
        raise ValueError(f"the reference mu target is defined on a discrete eps/v (DDPM) schedule only; these "
                         f"members use {units.family!r} units: use the faithful target")
    if deviation is not None and deviation.target == "reference" and schedule is None:
        raise ValueError("the reference mu target needs the model's discrete schedule")
    n_steps = len(sigmas) - 1
    window.check_fits(n_steps)
    if active is not None and (len(active) != K or any(len(a) != n_steps for a in active)):
        raise ValueError(f"active needs {K} rows of {n_steps} steps")
    if active is not None and not all(active[0]):
        raise ValueError("the base member must be active at every step of an AMDM run")
    raw = [float(v) for v in weights]
    per_step = _check_step_weights(step_weights, K, n_steps)
    if step_deviation is not None and (len(step_deviation) != n_steps or any(
            v is not None and not (math.isfinite(float(v)) and float(v) >= 0) for v in step_deviation)):
        raise ValueError(f"'step_deviation' must give one factor >= 0 (or None) per step ({n_steps})")
    w = spherical_weights(raw) if normalize_weights else raw
    win_end = -1 if window.empty else window.end
    runs = {k: [j for j in range(win_end + 1) if active is None or active[k][j]]
            for k in active_members(w)[1:]}
    runs = {k: r for k, r in runs.items() if r}
    if not runs:
        window, win_end = StepWindow(1, 0), -1
    den = [_Counted(f) for f in denoisers]
    trace = Trace(window=window, steps=n_steps, weights=list(w), evaluations=[0] * K, member_steps=[0] * K)
    trace.planned_member_steps = planned_member_steps(n_steps, [len(r) for r in runs.values()])
    done = 0

    def progress(k, j, x):
        nonlocal done
        done += 1
        trace.member_steps[k] += 1
        if on_progress is not None:
            on_progress(k, j, den[k].last_denoised, x, done, trace.planned_member_steps)

    x = {0: initial_states[0]}
    prev_first = {}                       # member -> (x_in, denoised, sigma) of the previous step
    for j in range(win_end + 1):
        s, s_next = sigmas[j], sigmas[j + 1]
        members = [0] + [k for k, r in runs.items() if j in r]
        for k in members:
            if k not in x:                # a helper starts: its own noise at step 0, else the base's state
                x[k] = initial_states[k] if j == 0 else x[0]
        results: dict[int, StepResult] = {}
        entering = dict(x)
        for k in members:
            den[k].begin_step()
            stream = 0 if step_noise == "shared" else k
            results[k] = stepper.step(den[k], x[k], s, s_next, j, stream)
            progress(k, j, results[k].state)
        if j in window and len(members) > 1:
            own = per_step is not None and per_step[j] is not None
            raw_j = per_step[j] if own else raw
            norm_j = normalize_weights if not own or normalize_step_weights is None else normalize_step_weights
            wj = spherical_weights([raw_j[k] for k in members]) if norm_j else _present(raw_j, members, own)
            dev_j = deviation
            if deviation is not None and step_deviation is not None and step_deviation[j] is not None:
                dev_j = _scaled(deviation, float(step_deviation[j]), K)
            trace.aggregated_weights.append(list(wj))
            now_first = {k: den[k].first for k in members}
            x = _aggregate_step(results, members, wj, mode, dev_j, step_noise, stepper, entering,
                                prev_first, now_first, float(s), float(s_next), schedule, trace, units)
            trace.aggregated_steps.append(j)
            trace.aggregated_sigmas.append(float(s_next))
        else:
            x = {k: r.state for k, r in results.items()}
        prev_first = {k: (den[k].first[0], den[k].first[1], float(s)) for k in members}
        x = {k: v for k, v in x.items() if k == 0 or (j + 1) in runs.get(k, ())}

    out = x[0]
    if win_end + 1 < n_steps:
        out = stepper.run(den[0], out, sigmas[win_end + 1:], win_end + 1, 0,
                          callback=lambda j, d, xs: progress(0, j, xs))
    trace.evaluations = [d.calls for d in den]
    return out, trace


def _present(raw_j, members, own):
    """Weights used as given; for a step's own weights, helpers not taking part in the step (noise ranges)
    hand their share to those that do (the helpers' L2 norm is kept), so the step's pull stays whole."""
    w = [raw_j[k] for k in members]
    if not own or len(w) < 2:
        return w
    full = math.sqrt(sum(v * v for v in raw_j[1:]))
    here = math.sqrt(sum(v * v for v in w[1:]))
    return w if here == 0 or here == full else [w[0]] + [v * full / here for v in w[1:]]


def _scaled(deviation: Deviation, scale: float, K: int) -> Deviation:
    """The deviation with its step lengths times `scale` (a relative step, a fraction, unchanged)."""
    if deviation.mode == "relative" or scale == 1.0:
        return deviation
    steps = [deviation.step_for(k) * scale for k in range(K)]
    return Deviation(step=steps, mode=deviation.mode, target=deviation.target, members=deviation.members,
                     scale=deviation.scale)


def _check_step_weights(step_weights, K, n_steps):
    """None, or one entry per step: None or K finite non-negative weights."""
    if step_weights is None:
        return None
    if len(step_weights) != n_steps:
        raise ValueError(f"'step_weights' has {len(step_weights)} entries; give one per step ({n_steps})")
    out = []
    for j, w in enumerate(step_weights):
        if w is None:
            out.append(None)
            continue
        vals = _as_floats(w, f"step_weights[{j}]")
        if len(vals) != K or any(v < 0 for v in vals):
            raise ValueError(f"'step_weights[{j}]' = {vals} must be {K} non-negative weights, one per member")
        out.append(vals)
    return out


def _aggregate_step(results, members, w, mode, deviation, step_noise, stepper, entering, prev_first, now_first,
                    sigma, sigma_next, schedule, trace, units=EPS_UNITS):
    # Shared noise: aggregate the pre-noise means (at sigma_down) and add the one draw afterwards.
    # Otherwise aggregate the post-step states, which sit at sigma_next.
    pre_noise = stepper.stochastic and step_noise == "shared" and stepper.separates_noise
    if pre_noise:
        c = units.scale(results[0].mean_sigma)
        parts = {k: results[k].mean for k in members}
    else:
        c = units.scale(sigma_next)
        parts = {k: results[k].state for k in members}
    u = [parts[k] / c for k in members]
    x_hat = spherical_aggregate(u, w, mode)            # w is aligned with members
    base_in = batch_norm(u[0]).clamp_min(1e-30)
    trace.norm_ratio.append(float((batch_norm(x_hat) / base_in).mean()))
    new = {}
    for k in members:
        optimise = deviation is not None and (deviation.members == "all" or k == 0)
        if deviation is None or optimise:
            vp = x_hat
            if optimise:
                mu = _target(k, results[k], c, deviation, entering, prev_first, now_first, sigma, schedule)
                vp = deviation_step(x_hat, mu, deviation.step_for(k), deviation.mode, deviation.scale)
            new[k] = vp * c + (results[0].noise if pre_noise else 0)
        else:
            new[k] = results[k].state        # a helper not optimised keeps its own trajectory
    return new


def _target(k, result, c, deviation, entering, prev_first, now_first, sigma, schedule):
    """The member's mu in VP units. "reference": the code's formula on the state entering this step,
    the eps of the member's previous step and the one-step alpha of the previous step's timestep.

    A helper that joined at this step (its noise range starts after step 0) has no previous step;
    its own eps of this step, on the state it joined with, stands in (a lag of 0 instead of 1), so
    its mu is still ~ its own pre-step state, under the same coefficients as the other members.
    """
    if deviation.target == "faithful":
        return result.mean / c
    s_prev = prev_first[0][2]             # the base runs every step, and step 0 never aggregates
    x_eps, d_eps, s_eps = prev_first[k] if k in prev_first else (*now_first[k], sigma)
    eps_prev = (x_eps - d_eps) / s_eps
    t = schedule.timestep(s_prev)
    x_in_vp = entering[k] / vp_scale(sigma)
    return code_exact_mu(x_in_vp, eps_prev, schedule.alpha(t), schedule.alpha_bar(t))
