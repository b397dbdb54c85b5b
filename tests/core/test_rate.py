"""Step-count-invariant AMDM weights (amdm_core.rate) and amdm_sample's opt-in step_weights."""
import math

import pytest
import torch

from amdm_core import (Deviation, DiscreteSchedule, EulerStepper, amdm_sample, flow_units, rate_for_share, rate_plan,
                       rate_step_weights, retained_share, step_log_spans, window_covering, window_from_steps)
from amdm_core.analytic import gaussian_denoiser
from amdm_core.steppers import StepResult
from amdm_core.units import vp_scale

SHAPE = (2, 4, 16, 16)
HI, LO = 8.0, 1.0


def karras(n, smin=0.03, smax=14.6, rho=7.0):
    r = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def ddim_uniform(n):
    return DiscreteSchedule.scaled_linear().ddim_uniform_sigmas(n)


@pytest.mark.parametrize("grid, hi, lo", [(karras, HI, LO), (ddim_uniform, 4.0, 0.5)])
def test_retained_share_depends_only_on_the_interval(grid, hi, lo):
    rate = rate_for_share(0.4, hi, lo)
    psi_end = 0.5 * math.pi * 0.6                  # the base keeps 0.4 of its right angle to the helpers
    counts = []
    for n in (10, 20, 50):
        s = grid(n)
        win = window_covering(hi, lo, s)
        plan = rate_plan(rate, [1.0, 2.0], s, win, interval=(hi, lo))
        assert plan.weights == rate_step_weights(rate, [1.0, 2.0], s, win, interval=(hi, lo))
        for seq in (plan.weights, plan.cumulative, plan.deviation_scale):
            assert len(seq) == len(s) - 1 and all((w is None) == (j not in win) for j, w in enumerate(seq))
        cum = [w for w in plan.cumulative if w is not None]
        # the base's composition in the members' own states stays spherical (sum w^2 = 1) at every step
        assert all(abs(sum(v * v for v in w) - 1) < 1e-12 for w in cum)
        assert all(w[2] == pytest.approx(2 * w[1]) for w in plan.weights + plan.cumulative if w is not None)
        assert sum(step_log_spans(s, win, (hi, lo))) == pytest.approx(math.log(hi / lo), rel=1e-12)
        assert cum[-1][0] == pytest.approx(math.cos(psi_end), rel=1e-12)
        assert retained_share(plan.weights, cumulative=True) == pytest.approx(0.4, rel=1e-12)
        # the deviation scales add up to the total angle, in units of the paper's 60 degree aggregation
        assert sum(v for v in plan.deviation_scale if v is not None) == pytest.approx(psi_end / (math.pi / 3))
        counts.append(win.end - win.start + 1)
    assert counts[0] < counts[1] < counts[2]
    # constant weights: the share shrinks with every window step the grid adds
    const = [retained_share([[0.8, 0.6]] * c) for c in counts]
    assert const[0] / const[2] > 10


def test_rate_zero_and_large_rates_stay_spherical():
    s = karras(20)
    win = window_covering(HI, LO, s)
    assert all(w == [1.0, 0.0] for w in rate_step_weights(0.0, [1.0], s, win, interval=(HI, LO)) if w is not None)
    plan = rate_plan(1e6, [1.0], s, win, interval=(HI, LO))
    big = [w for w in plan.cumulative if w is not None]
    assert all(0.0 <= w[0] < 1e-6 and w[1] == pytest.approx(1.0) for w in big)   # never past the helper
    assert all(min(w) >= 0 and max(w) <= 1 for w in plan.weights if w is not None)


class FrozenStepper:
    """A deterministic stepper that keeps every member's state fixed in VP units (x / sqrt(1 + sigma^2)):
    the analytic members of the composition test, whose states only change by aggregation."""
    stochastic = separates_noise = False

    def step(self, denoise, x, sigma, sigma_next, index, stream):
        denoise(x, torch.full((x.shape[0],), float(sigma)))
        y = x * (vp_scale(float(sigma_next)) / vp_scale(float(sigma)))
        return StepResult(y, y, float(sigma_next))

    def run(self, denoise, x, sigmas, first_index, stream, callback=None):
        for i in range(len(sigmas) - 1):
            x = self.step(denoise, x, sigmas[i], sigmas[i + 1], first_index + i, stream).state
        return x


def _composition(weights, s, win, o, h, **kw):
    """The base's final VP state as a * o + b * h (least squares over the two orthogonal-ish states)."""
    dens = [lambda x, sig: torch.zeros_like(x)] * 2
    out, _ = amdm_sample(dens, s, [o * vp_scale(float(s[0])), h * vp_scale(float(s[0]))], weights=weights, window=win,
                         stepper=FrozenStepper(), deviation=Deviation(step=0.0), **kw)   # the helper keeps its state
    vp = out / vp_scale(float(s[-1]))
    basis = torch.stack([o.flatten(), h.flatten()], 1).double()
    return torch.linalg.lstsq(basis, vp.flatten().double().unsqueeze(1)).solution.flatten().tolist()


@pytest.mark.parametrize("grid", [karras, ddim_uniform])
def test_frozen_members_compose_to_the_same_spherical_mix_at_every_step_count(gen, grid):
    """Members whose VP states do not move: AMDM is then the aggregation alone, and the base ends as
    a * own + b * helper. With the rate plan, (a, b) = (cos Psi, sin Psi) with Psi = (pi / 2)(1 - share)
    on every grid (sum of squares 1: the norm is kept for independent states). Unit-norm weights at every
    step (the previous form, tau_j = 1 - exp(-rate Delta_j)) leave the base more of its own state and add
    more helper on top as steps are added: measured (a, b) = (0.56, 1.59) / (0.72, 1.96) / (0.86, 2.26) at
    10 / 20 / 50 Karras steps, norm x1.7 to x2.4, against (0.31, 0.95) on every grid with the plan."""
    o, h = (torch.randn(1, 4, 32, 32, generator=gen, dtype=torch.float64) for _ in range(2))
    h = h - (h * o).sum() / (o * o).sum() * o                 # exactly orthogonal
    o, h = o / o.norm() * 64, h / h.norm() * 64
    hi, lo = (HI, LO) if grid is karras else (4.0, 0.5)
    rate = rate_for_share(0.2, hi, lo)
    psi = 0.5 * math.pi * 0.8
    new, old = [], []
    for n in (10, 20, 50):
        s = grid(n).double()
        win = window_covering(hi, lo, s)
        plan = rate_plan(rate, [1.0], s, win, interval=(hi, lo))
        new.append(_composition([1.0, 1.0], s, win, o, h, step_weights=plan.weights, normalize_step_weights=False))
        tau = [None if j not in win else [math.cos(0.5 * math.pi * -math.expm1(-rate * d)),
                                          math.sin(0.5 * math.pi * -math.expm1(-rate * d))]
               for j, d in enumerate(step_log_spans(s, win, (hi, lo)))]
        old.append(_composition([1.0, 1.0], s, win, o, h, step_weights=tau))
    for a, b in new:
        assert a == pytest.approx(math.cos(psi), abs=1e-6) and b == pytest.approx(math.sin(psi), abs=1e-6)
    assert max(a for a, _ in old) - min(a for a, _ in old) > 0.2          # the old form depends on the grid
    assert max(a * a + b * b for a, b in old) > 2.0                         # and inflates the norm


def test_window_own_span_and_flow_units():
    s = karras(20)
    win = window_from_steps(2, 6, 20)
    spans = step_log_spans(s, win)
    assert sum(spans) == pytest.approx(math.log(float(s[2]) / float(s[7])), rel=1e-6)
    with pytest.raises(ValueError, match="interval"):
        step_log_spans(s, window_from_steps(15, 19, 20))          # ends at sigma 0: log unbounded
    # flow sigmas measure the equivalent k-sigma s / (1 - s)
    t = s.double() / (1 + s.double())
    flow = rate_step_weights(0.7, [1.0], t.float(), win, units=flow_units())
    eps = rate_step_weights(0.7, [1.0], s, win)
    assert all((a is None and b is None) or a == pytest.approx(b, rel=1e-5) for a, b in zip(flow, eps))


def _members(gen):
    mb = torch.randn(SHAPE, generator=gen) * 0.5 - 0.5
    mh = torch.randn(SHAPE, generator=gen) * 0.5 + 0.5
    return mb, mh, [gaussian_denoiser(mb, 0.5), gaussian_denoiser(mh, 0.5)]


def test_default_path_is_unchanged_bitwise(gen):
    _, _, dens = _members(gen)
    s = ddim_uniform(12)
    n = len(s) - 1
    zs = [torch.randn(SHAPE, generator=gen) * s[0] for _ in range(2)]
    kw = dict(weights=[0.5, 0.866], window=window_from_steps(1, 4, n), stepper=EulerStepper(),
              deviation=Deviation(step=0.3))
    ref, tr = amdm_sample(dens, s, zs, **kw)
    for sw in ([None] * n, [[0.5, 0.866]] * n):
        out, tr2 = amdm_sample(dens, s, zs, step_weights=sw, **kw)
        assert torch.equal(out, ref) and tr2.aggregated_weights == tr.aggregated_weights
    assert tr.aggregated_weights == [pytest.approx([0.5, 0.866], abs=1e-3)] * 4
    with pytest.raises(ValueError, match="one per step"):
        amdm_sample(dens, s, zs, step_weights=[None] * (n - 1), **kw)
    with pytest.raises(ValueError, match=r"step_weights\[2\]"):
        amdm_sample(dens, s, zs, step_weights=[None, None, [1.0, -1.0]] + [None] * (n - 3), **kw)


@pytest.mark.parametrize("step", [0.0, 0.35])
def test_final_sample_depends_less_on_step_count_with_the_rate(gen, step):
    """Two Gaussian members (means -0.5 / +0.5 + noise), Euler, a window covering sigma 8..1 on Karras
    grids of 10, 20 and 50 steps (4, 9 and 21 window steps), without and with the deviation step
    (0.35 per sqrt(n), the default). The final base sample's projection onto the helper's mean moves
    across the grids by a fraction of its size that the rate plan (share 0.5, its weights and deviation
    scales) keeps small, while constant weights (0.8, 0.6) and the rate's weights with the deviation step
    at full length at every window step (the previous form) let it grow with the step count. Measured:
    rated 0.116 / 0.109 / 0.105 (spread 10 %) and 0.085 / 0.082 / 0.079 (7 %); constant weights 76 % and
    37 %; full-length deviation steps -0.04 / -0.18 / -0.32: each overshoots the step's small aggregation
    and pushes the base away from the helper, more often the more steps the window holds."""
    mb, mh, dens = _members(gen)
    z = [torch.randn(SHAPE, generator=gen) for _ in range(2)]
    d = mh - mb
    rate = rate_for_share(0.5, HI, LO)

    def pull(out):
        return float(((out - mb) * d).sum() / (d * d).sum())

    rated, const, unscaled = [], [], []
    for n in (10, 20, 50):
        s = karras(n)
        win = window_covering(HI, LO, s)
        kw = dict(window=win, stepper=EulerStepper(), deviation=Deviation(step=step))
        plan = rate_plan(rate, [1.0], s, win, interval=(HI, LO))
        x0 = [v * s[0] for v in z]
        rated.append(pull(amdm_sample(dens, s, x0, weights=[1, 1], step_weights=plan.weights,
                                      normalize_step_weights=False, step_deviation=plan.deviation_scale, **kw)[0]))
        unscaled.append(pull(amdm_sample(dens, s, x0, weights=[1, 1], step_weights=plan.weights,
                                         normalize_step_weights=False, **kw)[0]))
        const.append(pull(amdm_sample(dens, s, x0, weights=[0.8, 0.6], **kw)[0]))

    def spread(v):
        return (max(v) - min(v)) / abs(sum(v) / len(v))

    assert all(v > 0 for v in rated + const)              # both pull toward the helper
    assert spread(rated) < 0.15
    assert spread(const) / spread(rated) > 4.0
    if step:
        assert spread(unscaled) / spread(rated) > 4.0


def test_deviation_scale_and_its_checks(gen):
    _, _, dens = _members(gen)
    s = ddim_uniform(12)
    n = len(s) - 1
    zs = [torch.randn(SHAPE, generator=gen) * s[0] for _ in range(2)]
    kw = dict(weights=[0.5, 0.866], window=window_from_steps(1, 4, n), stepper=EulerStepper())
    ref, _ = amdm_sample(dens, s, zs, deviation=Deviation(step=0.3), **kw)
    same, _ = amdm_sample(dens, s, zs, deviation=Deviation(step=0.3), step_deviation=[1.0] * n, **kw)
    assert torch.equal(same, ref)
    half, _ = amdm_sample(dens, s, zs, deviation=Deviation(step=0.3), step_deviation=[0.5] * n, **kw)
    assert torch.allclose(half, amdm_sample(dens, s, zs, deviation=Deviation(step=0.15), **kw)[0])
    rel = Deviation(step=0.3, mode="relative")                # a fraction: not scaled
    assert torch.equal(amdm_sample(dens, s, zs, deviation=rel, step_deviation=[0.5] * n, **kw)[0],
                       amdm_sample(dens, s, zs, deviation=rel, **kw)[0])
    with pytest.raises(ValueError, match="'step_deviation'"):
        amdm_sample(dens, s, zs, deviation=rel, step_deviation=[0.5] * (n - 1), **kw)
    with pytest.raises(ValueError, match="'step_deviation'"):
        amdm_sample(dens, s, zs, deviation=rel, step_deviation=[-1.0] * n, **kw)


def test_bad_inputs_name_the_input():
    s = karras(20)
    win = window_covering(HI, LO, s)
    with pytest.raises(ValueError, match="'rate'"):
        rate_step_weights(-1.0, [1.0], s, win)
    with pytest.raises(ValueError, match="'helper_weights'"):
        rate_step_weights(1.0, [0.0, 0.0], s, win)
    with pytest.raises(ValueError, match="'interval'"):
        rate_step_weights(1.0, [1.0], s, win, interval=(1.0, 8.0))
    with pytest.raises(ValueError, match="'share'"):
        rate_for_share(0.0, HI, LO)
    with pytest.raises(ValueError, match="'sigmas'"):
        step_log_spans(s.flip(0), window_from_steps(1, 3, 20))
    with pytest.raises(ValueError, match="'sigma_high'"):
        window_covering(1.0, 8.0, s)


def test_a_helper_outside_its_noise_range_hands_its_share_to_the_others(gen):
    """Three frozen members, the plan split equally between two helpers; the second helper is not active
    (its noise range) in the window: the first takes the whole helper share, and the base still ends on
    cos Psi o + sin Psi h1 (the step's pull is not lost with the absent helper)."""
    o, h1, h2 = (torch.randn(1, 4, 16, 16, generator=gen, dtype=torch.float64) for _ in range(3))
    s = karras(20).double()
    win = window_covering(HI, LO, s)
    plan = rate_plan(rate_for_share(0.3, HI, LO), [1.0, 1.0], s, win, interval=(HI, LO))
    n = len(s) - 1
    active = [[True] * n, [True] * n, [False] * n]
    dens = [lambda x, sig: torch.zeros_like(x)] * 3
    c0 = vp_scale(float(s[0]))
    out, tr = amdm_sample(dens, s, [o * c0, h1 * c0, h2 * c0], weights=[1.0, 1.0, 1.0], window=win,
                          stepper=FrozenStepper(), deviation=Deviation(step=0.0), active=active,
                          step_weights=plan.weights, normalize_step_weights=False)
    psi = 0.5 * math.pi * 0.7
    assert torch.allclose(out, math.cos(psi) * o + math.sin(psi) * h1, atol=1e-5)
    assert all(len(w) == 2 for w in tr.aggregated_weights)
