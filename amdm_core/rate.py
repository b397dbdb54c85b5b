"""Step-count-invariant AMDM weights: a continuous aggregation rate over the noise interval.

With constant weights (omega, sqrt(1 - omega^2)) at every window step, the cumulative pull toward the
helpers grows with the number of steps the window holds: the same window by noise level aggregates
3 times at 10 steps and 15 times at 50. Here each window step j instead gets a weight from a rate
per unit of log-noise and the part of the log-sigma interval the step spans,

    Delta_j = |log s_j - log s_{j+1}|   (s = the k-diffusion sigma, clipped to the interval)
    tau_j   = 1 - exp(-rate * Delta_j)                     (the step's slerp fraction)
    theta_j = (pi / 2) * tau_j                             (~ rate * Delta_j * pi / 2 for small steps)
    weights = [cos theta_j, sin theta_j * h_1, ..., sin theta_j * h_{K-1}]   (sum of squares 1)

where h is the helpers' relative weights scaled to unit L2 norm. Why this form:

- Per-step weights stay spherical (sum w^2 = 1), as AMDM's aggregation needs.
- The helpers' weight is first order in Delta_j, so the per-step aggregations are the steps of one
  continuous relaxation in log sigma and the sample converges as the step count grows. (Choosing
  cos theta_j = exp(-rate * Delta_j) would keep prod cos theta_j fixed, but its helper weight
  sin theta_j ~ sqrt(2 rate Delta_j) is half order: the coherent pull toward the helpers then grows
  like sqrt(steps), worse than constant weights in tests/core/test_rate.py's measurement.)
- The base's retained share, prod_j (1 - tau_j) = exp(-rate * sum_j Delta_j), depends only on the
  interval spanned, whatever the grid. In the slerp mode this is exactly the fraction of the angle
  between the base and a fixed helper direction that the base keeps (each slerp step moves a
  fraction tau_j along the great circle; spherical equals slerp for orthogonal equal-norm inputs).
  theta_j never exceeds pi/2, so the base weight never turns negative, however large the rate.
- log sigma rather than sigma: the noise levels are spread roughly evenly in log sigma by the usual
  schedulers, and a sigma measure would put almost all the rate into the few high-noise steps
  (sigma 14.6 -> 1 is 93 % of SD's sigma range but half of its log-sigma range). For flow and EDM
  members, s is the equivalent k-diffusion sigma (StateUnits.eps_sigma).

The interval defaults to the window's own span [sigma at its first step, sigma after its last];
pass `interval` to clip to a fixed noise range, with a window that covers it (window_covering), so
that runs of any step count span exactly that range: their retained shares then agree to rounding.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch

from .state_units import EPS_UNITS, StateUnits
from .weights import _as_floats
from .window import EMPTY_WINDOW, StepWindow

StepWeights = List[Optional[List[float]]]    # per step: K weights at a window step, None elsewhere


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


def rate_step_weights(rate: float, helper_weights: Sequence[float], sigmas: Sequence[float] | torch.Tensor,
                      window: StepWindow, *, interval=None, units: Optional[StateUnits] = None) -> StepWeights:
    """Per-step spherical weights for amdm_sample(step_weights=...), from a continuous rate.

    rate: >= 0, per unit of log k-sigma; the base keeps exp(-rate * L) of its angle to the helpers
      over a window spanning L = log(sigma_high / sigma_low) (rate_for_share gives the rate for a share).
    helper_weights: K - 1 non-negative relative weights of the helpers (their L2 split of sin theta_j);
      the base's weight comes from the rate. Pass amdm_sample weights = [1, *helper_weights] so the
      same helpers run.
    sigmas: the run's sigmas in the members' own units (as amdm_sample gets them); window: the run's
      resolved window; interval: optional (sigma_high, sigma_low) in the same units that clips each
      step's span (see the module docstring); units: the members' StateUnits (None = eps).
    Returns one entry per step: K weights (sum of squares 1) at window steps, None elsewhere.
    """
    r = _as_floats([rate], "rate")[0]
    if r < 0:
        raise ValueError(f"'rate' = {r} must be >= 0")
    h = _as_floats(helper_weights, "helper_weights")
    if not h or any(v < 0 for v in h) or max(h) == 0:
        raise ValueError(f"'helper_weights' = {h} must be one or more non-negative weights, not all zero")
    norm = math.sqrt(sum((v / max(h)) ** 2 for v in h))
    h = [v / max(h) / norm for v in h]
    out: StepWeights = []
    for j, span in enumerate(step_log_spans(sigmas, window, interval, units)):
        if j not in window:
            out.append(None)
            continue
        theta = 0.5 * math.pi * -math.expm1(-r * span)          # tau_j = 1 - exp(-rate * Delta_j)
        out.append([math.cos(theta)] + [math.sin(theta) * v for v in h])
    return out


def retained_share(step_weights: StepWeights) -> float:
    """prod_j (1 - tau_j), tau_j = (2 / pi) acos(w_0j) over the steps that have weights: the fraction of
    its angle to the helpers the base keeps (exp(-rate * L) for rate_step_weights)."""
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
