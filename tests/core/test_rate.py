"""Step-count-invariant AMDM weights (amdm_core.rate) and amdm_sample's opt-in step_weights."""
import math

import pytest
import torch

from amdm_core import (Deviation, DiscreteSchedule, EulerStepper, amdm_sample, flow_units, rate_for_share,
                       rate_step_weights, retained_share, step_log_spans, window_covering, window_from_steps)
from amdm_core.analytic import gaussian_denoiser

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
    shares, angles, counts = [], [], []
    for n in (10, 20, 50):
        s = grid(n)
        win = window_covering(hi, lo, s)
        sw = rate_step_weights(rate, [1.0, 2.0], s, win, interval=(hi, lo))
        assert len(sw) == len(s) - 1 and all((w is None) == (j not in win) for j, w in enumerate(sw))
        assert all(abs(sum(v * v for v in w) - 1) < 1e-12 for w in sw if w is not None)
        assert all(w[2] == pytest.approx(2 * w[1]) for w in sw if w is not None)
        assert sum(step_log_spans(s, win, (hi, lo))) == pytest.approx(math.log(hi / lo), rel=1e-12)
        shares.append(retained_share(sw))
        angles.append(sum(math.acos(w[0]) for w in sw if w is not None))
        counts.append(win.end - win.start + 1)
    assert counts[0] < counts[1] < counts[2]
    assert shares == pytest.approx([0.4] * 3, rel=1e-12)
    # the total rotation converges as steps are added (first order in each step's span)
    assert abs(angles[2] - angles[1]) < abs(angles[1] - angles[0])
    # constant weights: the share shrinks with every window step the grid adds
    const = [retained_share([[0.8, 0.6]] * c) for c in counts]
    assert const[0] / const[2] > 10


def test_rate_zero_and_large_rates_stay_spherical():
    s = karras(20)
    win = window_covering(HI, LO, s)
    assert all(w == [1.0, 0.0] for w in rate_step_weights(0.0, [1.0], s, win, interval=(HI, LO)) if w is not None)
    big = [w for w in rate_step_weights(1e6, [1.0], s, win, interval=(HI, LO)) if w is not None]
    assert all(0.0 <= w[0] < 1e-6 and w[1] == pytest.approx(1.0) for w in big)   # never past the helper


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


def test_final_sample_depends_less_on_step_count_with_the_rate(gen):
    """Two Gaussian members (means -0.5 / +0.5 + noise), Euler, a window covering sigma 8..1 on Karras
    grids of 10, 20 and 50 steps (4, 9 and 21 window steps). Measured: the final base sample's
    projection onto the helper's mean moves by ~11 % of its size across the grids with the rate
    (share 0.5) and by ~76 % with constant weights (0.8, 0.6): a ratio of ~6.7."""
    mb, mh, dens = _members(gen)
    z = [torch.randn(SHAPE, generator=gen) for _ in range(2)]
    d = mh - mb
    rate = rate_for_share(0.5, HI, LO)

    def pull(out):
        return float(((out - mb) * d).sum() / (d * d).sum())

    rated, const = [], []
    for n in (10, 20, 50):
        s = karras(n)
        win = window_covering(HI, LO, s)
        kw = dict(window=win, stepper=EulerStepper(), deviation=Deviation(step=0.0))
        sw = rate_step_weights(rate, [1.0], s, win, interval=(HI, LO))
        rated.append(pull(amdm_sample(dens, s, [v * s[0] for v in z], weights=[1, 1], step_weights=sw, **kw)[0]))
        const.append(pull(amdm_sample(dens, s, [v * s[0] for v in z], weights=[0.8, 0.6], **kw)[0]))

    def spread(v):
        return (max(v) - min(v)) / (sum(v) / len(v))

    assert all(v > 0 for v in rated + const)              # both pull toward the helper
    assert spread(rated) < 0.15
    assert spread(const) / spread(rated) > 4.0


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
