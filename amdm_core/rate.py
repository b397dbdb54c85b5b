"""Step-count-invariant AMDM ("per noise interval"): a continuous aggregation rate over the noise interval.

With constant weights (omega, sqrt(1 - omega^2)) at every window step, the cumulative pull toward the
helpers grows with the number of steps the window holds: the same window by noise level aggregates
3 times at 10 steps and 15 times at 50. Here the pull is one continuous relaxation in log sigma,
applied at whatever steps the grid has, and the deviation step is scaled to each step's share of it.

The base's cumulative composition. After the part l of the window's log k-sigma interval (length L)
the base is, in terms of the members' own (independent-noise) states o (its own) and h (the helpers,
split by their relative weights scaled to unit L2 norm),

    x(l) = cos Psi(l) o + sin Psi(l) h,      Psi(l) = (pi / 2) (1 - exp(-rate * l)),

spherical weights (sum of squares 1) at every l, so the noise variance is kept for independent members
as AMDM's aggregation intends, and the base keeps the share 1 - Psi(L) / (pi / 2) = exp(-rate * L) of
its right angle to the helpers over the window (rate_for_share gives the rate for a share). Psi stays
below pi / 2 at every finite rate: the base's weight never turns negative.

Each window step j covers Delta_j = |log s_j - log s_{j+1}| (s = the k-diffusion sigma, clipped to the
interval); after it the base must hold cos Psi_j o + sin Psi_j h, Psi_j = Psi(Delta_1 + ... + Delta_j).
The state it aggregates already holds cos Psi_{j-1} o + sin Psi_{j-1} h, so the step's weights are

    w_0j = cos Psi_j / cos Psi_{j-1},      w_kj = h_k sin(Psi_j - Psi_{j-1}) / cos Psi_{j-1},

which map the one onto the other exactly (cos Psi_j tan Psi_{j-1} + sin(Psi_j - Psi_{j-1}) / cos Psi_{j-1}
= sin Psi_j). They are the spherical weights (cos, sin) of the step's angle at the first step and are
applied as given (not rescaled to unit norm) after it. Why not unit-norm weights at every step: the
previous form [cos theta_j, sin theta_j h], theta_j = (pi / 2)(1 - exp(-rate * Delta_j)), is spherical for
orthogonal inputs only; from the second step the base already holds helper content, and
cos theta_j x + sin theta_j h adds sin theta_j of the helper while removing only 1 - cos theta_j ~
theta_j^2 / 2 of the base. Over many small steps the helper piles up on top of a nearly untouched base
(frozen members, share 0.2, Karras, sigma 8 -> 1: the base ends as 0.56 o + 1.59 h at 10 steps and
0.86 o + 2.26 h at 50, norm x1.7 and x2.4, against 0.31 o + 0.95 h here at every step count); the
outcome follows the step count, the opposite of the option's purpose (tests/core/test_rate.py).

The deviation step. An absolute (or clamped) deviation step moves the aggregate back toward the base's
own mean by a fixed distance p sqrt(n) each time it runs. The aggregation of a step moves the base by
~ its angle theta_j = Psi_j - Psi_{j-1} (times the state's norm), so at full length the deviation
undoes a fraction ~ p / theta_j of each step's pull: a few large steps keep most of it, many small
steps (theta_j < p) are overshot, and the base is pushed away from the helpers, more so the more steps
the window holds (measured on the toy benchmark: joint success 59 / 40 / 6 % at 10 / 20 / 50 steps).
Here step j's deviation length is p * theta_j / (pi / 3): p is read as the length for one
aggregation of the paper's strength (omega = 0.5, an angle of pi / 3, what the default p = 0.35 is
sized for), and every step removes the same fraction of its own pull, so the total deviation over a
window follows its noise interval, not its step count (deviation_scale; "relative" steps are a
fraction already and are not scaled).

- log sigma rather than sigma: the noise levels are spread roughly evenly in log sigma by the usual
  schedulers, and a sigma measure would put almost all the rate into the few high-noise steps
  (sigma 14.6 -> 1 is 93 % of SD's sigma range but half of its log-sigma range). For flow and EDM
  members, s is the equivalent k-diffusion sigma (StateUnits.eps_sigma).
- What stays grid dependent: the exact composition assumes the states do not move between window
  steps. They do, by the members' own steps, and the aggregation acts at the grid's sigmas only: on a
  coarse grid the pull over a step's span arrives at its end (later, at lower noise, with fewer base
  steps after it). The benchmark's reference-like setting still varies by ~10 pp between 10 and 50
  steps (47.6 / 40.8 / 38.0 % on ddim_uniform; 11.3 pp over three schedulers, 2 pp between schedulers),
  against ~80 pp with the previous form (bench/results/quality/table_modes.md).

The interval defaults to the window's own span [sigma at its first step, sigma after its last];
pass `interval` to clip to a fixed noise range, with a window that covers it (window_covering), so
that runs of any step count span exactly that range: their retained shares then agree to rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from .state_units import EPS_UNITS, StateUnits
from .weights import _as_floats
from .window import EMPTY_WINDOW, StepWindow

StepWeights = List[Optional[List[float]]]    # per step: K weights at a window step, None elsewhere
REFERENCE_ANGLE = math.pi / 3                # the paper's aggregation (omega = 0.5): what a deviation step is sized for


def _k_sigma(units: StateUnits, sigma: float) -> float:
    return float(units.eps_sigma(float(sigma)))


def _check_interval(interval, units: StateUnits) -> tuple[float, float]:
    hi, lo = (float(v) for v in interval)
    if not (math.isfinite(hi) and math.isfinite(lo)) or lo <= 0 or hi <= lo:
        raise ValueError(f"'interval' = ({hi}, {lo}) must be (sigma_high, sigma_low) with sigma_high > sigma_low > 0")
    return _k_sigma(units, hi), _k_sigma(units, lo)


def step_log_spans(sigmas: Sequence[float] | torch.Tensor, window: StepWindow, interval=None,
                   units: Optional[StateUnits] = None) -> List[float]:
    """Delta_j for every step of the run (0 outside the window): the log k-sigma length of the part of
    step j's interval (s_{j+1}, s_j) inside `interval` (the window's own span when None)."""
    units = EPS_UNITS if units is None else units
    s = [float(v) for v in sigmas]
    n = len(s) - 1
    window.check_fits(n)
    if any(b > a for a, b in zip(s, s[1:])):
        raise ValueError("'sigmas' must not increase (a sampling schedule runs from high to low noise)")
    spans = [0.0] * n
    if window.empty:
        return spans
    if interval is None:
        if s[window.end + 1] <= 0:
            raise ValueError(f"the window ends with the step to sigma {s[window.end + 1]}, where log sigma is "
                             f"unbounded; pass 'interval' = (sigma_high, sigma_low > 0) to clip the rate's measure")
        interval = (s[window.start], s[window.end + 1])
    hi, lo = _check_interval(interval, units)
    for j in range(window.start, window.end + 1):
        a, b = min(_k_sigma(units, s[j]), hi), max(_k_sigma(units, s[j + 1]), lo)
        spans[j] = math.log(a / b) if a > b else 0.0
    return spans


@dataclass(frozen=True)
class RatePlan:
    """What "per noise interval" does at each step of a run (None outside the window).

    weights: the K raw weights amdm_sample applies at step j to the members' states, used as given
      (normalize_step_weights=False): they move the base from the cumulative weights of step j - 1
      to those of step j; not unit norm once the base already holds helper content.
    cumulative: the base's composition after step j in terms of the members' own states,
      [cos Psi_j, sin Psi_j * h_1, ...]: sum of squares 1 (AMDM's spherical weights).
    deviation_scale: the factor on an absolute deviation step's length at step j, theta_j / (pi / 3)
      with theta_j = Psi_j - Psi_{j-1} (see the module docstring).
    """
    weights: StepWeights
    cumulative: StepWeights
    deviation_scale: List[Optional[float]]


def rate_plan(rate: float, helper_weights: Sequence[float], sigmas: Sequence[float] | torch.Tensor,
              window: StepWindow, *, interval=None, units: Optional[StateUnits] = None) -> RatePlan:
    """The per-step weights and deviation scales of strength "per noise interval" (module docstring).

    rate: >= 0, per unit of log k-sigma; the base keeps exp(-rate * L) of its angle to the helpers
      over a window spanning L = log(sigma_high / sigma_low) (rate_for_share gives the rate for a share).
    helper_weights: K - 1 non-negative relative weights of the helpers (their L2 split of sin Psi);
      the base's weight comes from the rate. Pass amdm_sample weights = [1, *helper_weights] so the
      same helpers run.
    sigmas: the run's sigmas in the members' own units (as amdm_sample gets them); window: the run's
      resolved window; interval: optional (sigma_high, sigma_low) in the same units that clips each
      step's span (see the module docstring); units: the members' StateUnits (None = eps).
    Pass plan.weights as amdm_sample(step_weights=..., normalize_step_weights=False) and
    plan.deviation_scale as step_deviation=...
    """
    r = _as_floats([rate], "rate")[0]
    if r < 0:
        raise ValueError(f"'rate' = {r} must be >= 0")
    h = _as_floats(helper_weights, "helper_weights")
    if not h or any(v < 0 for v in h) or max(h) == 0:
        raise ValueError(f"'helper_weights' = {h} must be one or more non-negative weights, not all zero")
    norm = math.sqrt(sum((v / max(h)) ** 2 for v in h))
    h = [v / max(h) / norm for v in h]
    weights: StepWeights = []
    cumulative: StepWeights = []
    scales: List[Optional[float]] = []
    covered = 0.0
    for j, span in enumerate(step_log_spans(sigmas, window, interval, units)):
        if j not in window:
            weights.append(None)
            cumulative.append(None)
            scales.append(None)
            continue
        psi0 = 0.5 * math.pi * -math.expm1(-r * covered)     # Psi before this step
        covered += span
        psi1 = 0.5 * math.pi * -math.expm1(-r * covered)     # Psi(l) = (pi / 2) (1 - exp(-rate * l))
        c0 = math.cos(psi0)                                  # > 0: Psi < pi / 2 at every finite l
        weights.append([math.cos(psi1) / c0] + [math.sin(psi1 - psi0) / c0 * v for v in h])
        cumulative.append([math.cos(psi1)] + [math.sin(psi1) * v for v in h])
        scales.append((psi1 - psi0) / REFERENCE_ANGLE)
    return RatePlan(weights, cumulative, scales)


def rate_step_weights(rate: float, helper_weights: Sequence[float], sigmas: Sequence[float] | torch.Tensor,
                      window: StepWindow, *, interval=None, units: Optional[StateUnits] = None) -> StepWeights:
    """rate_plan(...).weights: per-step weights for amdm_sample(step_weights=..., normalize_step_weights=False)."""
    return rate_plan(rate, helper_weights, sigmas, window, interval=interval, units=units).weights


def retained_share(step_weights: StepWeights, cumulative: bool = False) -> float:
    """The fraction of its angle to the helpers the base keeps over the steps that have weights.

    cumulative=False (strength "per step": unit-norm weights at every step): prod_j (1 - tau_j),
    tau_j = (2 / pi) acos(w_0j), each step a slerp fraction toward the helpers.
    cumulative=True (rate_plan's weights): the base's cumulative weight is cos Psi = prod_j w_0j, and
    the share 1 - Psi / (pi / 2) (exp(-rate * L) for rate_plan).
    """
    if cumulative:
        c = 1.0
        for w in step_weights:
            if w is not None:
                c *= float(w[0])
        return 1.0 - (2.0 / math.pi) * math.acos(min(1.0, max(0.0, c)))
    share = 1.0
    for w in step_weights:
        if w is not None:
            share *= 1.0 - (2.0 / math.pi) * math.acos(min(1.0, max(0.0, float(w[0]))))
    return share


def rate_for_share(share: float, sigma_high: float, sigma_low: float, units: Optional[StateUnits] = None) -> float:
    """The rate whose base keeps `share` (0 < share <= 1) over [sigma_low, sigma_high] (members' units)."""
    units = EPS_UNITS if units is None else units
    sh = _as_floats([share], "share")[0]
    if not 0 < sh <= 1:
        raise ValueError(f"'share' = {sh} must be in (0, 1]")
    hi, lo = _check_interval((sigma_high, sigma_low), units)
    return -math.log(sh) / math.log(hi / lo)


def window_covering(sigma_high: float, sigma_low: float, sigmas: Sequence[float] | torch.Tensor) -> StepWindow:
    """The steps j >= 1 whose interval (sigmas[j+1], sigmas[j]) overlaps (sigma_low, sigma_high).

    Unlike window_from_sigmas (a step belongs to the range its starting sigma is in) this includes
    the step that enters the range from above and the one that leaves it, so the window spans the
    whole range (step 0 excepted: it never aggregates) and rate_step_weights' spans sum to
    log(sigma_high / sigma_low) on every grid whose sigmas[1] >= sigma_high.
    """
    if sigma_high <= sigma_low:
        raise ValueError(f"'sigma_high' = {sigma_high} must be above 'sigma_low' = {sigma_low}")
    s = [float(v) for v in sigmas]
    inside = [j for j in range(1, len(s) - 1) if s[j + 1] < sigma_high and s[j] > sigma_low]
    return StepWindow(inside[0], inside[-1]) if inside else EMPTY_WINDOW
