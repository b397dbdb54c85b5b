"""Per-family state <-> VP units (amdm_core.state_units): flow (CONST), EDM, Cosmos rflow, eps.

Flow members are exact denoisers of Gaussian data in flow parameterization (analytic
flow_gaussian_denoiser). A flow trajectory x at sigma in [0, 1] maps to the k-diffusion trajectory
x / (1 - sigma) at sigma_k = s sigma / (1 - sigma); AMDM in flow units must equal AMDM in eps units
on that mapped trajectory.
"""
import math

import pytest
import torch

from amdm_core import (EPS_UNITS, FAITHFUL, REFERENCE_COMPATIBLE, STATE_FAMILIES, Deviation, DiscreteSchedule,
                       EulerAncestralStepper, EulerStepper, StateUnits, StepResult, amdm_sample, batch_norm,
                       edm_units, eps_units, flow_units, rflow_units, seeded_noise, spherical_aggregate,
                       spherical_weights, vp_scale, window_from_steps)
from amdm_core.analytic import flow_gaussian_denoiser, gaussian_denoiser

SHAPE = (2, 4, 16, 16)
STD = 0.6


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def flow_sigmas(n, start=1.0, shift=3.0):
    """SD3-style shifted flow schedule from `start` (a flow sigma before the shift) down to 0."""
    t = torch.linspace(start, 0.0, n + 1, dtype=torch.float64)
    return (shift * t / (1 + (shift - 1) * t)).float()


def to_k_sigmas(sig, s):
    """sigma_k = s sigma / (1 - sigma), computed from the float32 flow sigmas (sigma < 1)."""
    t = sig.double()
    return (s * t / (1 - t)).float()


def k_members_from_flow(flow_dens, sig, k_sig):
    """The same members on k-states: D_k(x_k, sigma_k) = D_flow((1 - sigma) x_k, sigma), sigma looked up
    exactly from the grid (no float round trip through sigma_k)."""
    lookup = {float(sk): float(t) for sk, t in zip(k_sig, sig)}

    def wrap(fd):
        def den(x, sigma, **kw):
            t = torch.tensor([lookup[float(v)] for v in sigma], dtype=torch.float32)
            a = (1.0 - t.double()).view(-1, *([1] * (x.ndim - 1)))
            return fd((x.double() * a).float(), t)
        return den
    return [wrap(fd) for fd in flow_dens]


def flow_members(gen, k, s=1.0):
    return [flow_gaussian_denoiser(torch.randn(SHAPE, generator=gen), STD, s) for _ in range(k)]


class Recorder:
    def __init__(self):
        self.rows = []

    def __call__(self, k, j, d, x, done, total):
        self.rows.append((k, j, d.clone(), x.clone()))


# ---- (1) the conversion: unit variance ----------------------------------------------------------

@pytest.mark.parametrize("s", [1.0, 0.5, 8.0])
@pytest.mark.parametrize("sigma", [0.0, 0.05, 0.3, 0.5, 0.8, 0.97, 1.0])
def test_flow_vp_state_has_unit_variance(sigma, s):
    g = torch.Generator().manual_seed(7)
    x0, eps = torch.randn(4, 200_000, generator=g), torch.randn(4, 200_000, generator=g)
    x = (1 - sigma) * x0 + sigma * s * eps
    u = flow_units(s)
    v = u.to_vp(x, sigma)
    assert abs(float(v.var()) - 1.0) < 0.01
    # exactly the VP state cos(theta) x0 + sin(theta) eps, tan(theta) = s sigma / (1 - sigma)
    theta = math.atan2(s * sigma, 1 - sigma)
    assert rel_err(v, math.cos(theta) * x0 + math.sin(theta) * eps) < 1e-6
    assert rel_err(u.from_vp(v, sigma), x) < 1e-6
    assert u.scale(sigma) == pytest.approx(math.sqrt((1 - sigma) ** 2 + (s * sigma) ** 2), rel=1e-15)
    if sigma < 1:   # the eps-family VP state of the mapped k-state
        sk = u.eps_sigma(sigma)
        assert sk == pytest.approx(s * sigma / (1 - sigma))
        assert rel_err(v, EPS_UNITS.to_vp(x / (1 - sigma), sk)) < 1e-6


@pytest.mark.parametrize("sd", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("sigma", [0.0, 0.002, 0.5, 3.0, 80.0])
def test_edm_vp_state_has_unit_variance_for_data_of_std_sigma_data(sigma, sd):
    g = torch.Generator().manual_seed(8)
    x0, eps = sd * torch.randn(4, 200_000, generator=g), torch.randn(4, 200_000, generator=g)
    u = edm_units(sd)
    v = u.to_vp(x0 + sigma * eps, sigma)
    assert abs(float(v.var()) - 1.0) < 0.01
    # the eps-family VP state of the normalised data x0 / sd at k-sigma sigma / sd
    assert u.eps_sigma(sigma) == pytest.approx(sigma / sd)
    assert rel_err(v, EPS_UNITS.to_vp(x0 / sd + (sigma / sd) * eps, sigma / sd)) < 1e-6


@pytest.mark.parametrize("sigma", [0.002, 0.5, 1.0, 14.6, 80.0])
def test_rflow_units_are_k_space_and_match_flow_units_on_the_rectified_flow_state(sigma):
    g = torch.Generator().manual_seed(9)
    x0, eps = torch.randn(2, 50_000, generator=g), torch.randn(2, 50_000, generator=g)
    x = x0 + sigma * eps                     # what ComfyUI's COSMOS_RFLOW sampler state is
    t = sigma / (1 + sigma)                  # what the network sees: x (1 - t) at t
    u = rflow_units()
    assert u.scale(sigma) == vp_scale(sigma)
    assert rel_err(u.to_vp(x, sigma), flow_units().to_vp(x * (1 - t), t)) < 1e-6
    assert abs(float(u.to_vp(x, sigma).var()) - 1.0) < 0.02
    assert not u.discrete


def test_scale_accepts_floats_0d_and_per_sample_tensors():
    for u in (flow_units(2.0), edm_units(0.5), eps_units(), rflow_units()):
        per = torch.tensor([0.1, 0.6, 0.9])
        x = torch.randn(3, 4, 5, 5)
        v = u.to_vp(x, per)
        for b in range(3):
            assert u.scale(torch.tensor(float(per[b]))).dtype == torch.float32
            assert float(u.scale(torch.tensor(float(per[b])))) == pytest.approx(u.scale(float(per[b])), rel=1e-7)
            assert torch.allclose(v[b], x[b] / u.scale(float(per[b])), rtol=1e-6)
        assert torch.allclose(u.from_vp(v, per), x, rtol=1e-6, atol=1e-7)
    assert flow_units(3.0).scale(1.0) == 3.0 and flow_units().scale(0.0) == 1.0
    assert flow_units().eps_sigma(1.0) == math.inf


def test_family_constructors_and_refusals():
    assert STATE_FAMILIES == ("eps", "flow", "edm", "rflow")
    assert eps_units() == StateUnits() == EPS_UNITS and eps_units().discrete
    assert flow_units(8) == StateUnits("flow", noise_scale=8.0) and not flow_units().discrete
    assert edm_units(0.5).sigma_data == 0.5 and not edm_units(0.5).discrete
    for bad in (lambda: StateUnits("x0"), lambda: flow_units(0.0), lambda: flow_units(math.nan),
                lambda: edm_units(-1.0), lambda: StateUnits("eps", noise_scale=2.0),
                lambda: StateUnits("flow", sigma_data=0.5), lambda: StateUnits("rflow", sigma_data=2.0)):
        with pytest.raises(ValueError):
            bad()


# ---- (2) AMDM in flow units == AMDM on the mapped eps trajectory -------------------------------

def flow_and_mapped_eps(gen, k, n, start, s):
    """k analytic flow members on n flow sigmas from `start`, the same members on the mapped
    k-diffusion sigmas, and one unit noise per member: (sig, k_sig, flow dens, k dens, z)."""
    sig = flow_sigmas(n, start=start)
    k_sig = to_k_sigmas(sig, s)
    fd = flow_members(gen, k, s)
    kd = k_members_from_flow(fd, sig, k_sig)
    return sig, k_sig, fd, kd, [torch.randn(SHAPE, generator=gen) for _ in range(k)]


DEVIATIONS = [None, FAITHFUL.deviation, Deviation(step=0.5, members="all"), Deviation(step=0.3, mode="clamped")]


@pytest.mark.parametrize("s", [1.0, 8.0])
@pytest.mark.parametrize("mode", ["spherical", "slerp"])
@pytest.mark.parametrize("dev", range(len(DEVIATIONS)))
def test_amdm_in_flow_units_equals_amdm_on_the_mapped_eps_trajectory(gen, s, mode, dev):
    k, n = 3, 12
    sig, k_sig, fd, kd, z = flow_and_mapped_eps(gen, k, n, 0.96, s)
    w, win = [1.0, 0.7, 0.4], window_from_steps(1, 5, n)
    rec_f, rec_k = Recorder(), Recorder()
    out_f, tr_f = amdm_sample(fd, sig, [float(sig[0]) * s * zk for zk in z], weights=w, window=win,
                              stepper=EulerStepper(), mode=mode, deviation=DEVIATIONS[dev], on_progress=rec_f,
                              units=flow_units(s))
    out_k, tr_k = amdm_sample(kd, k_sig, [float(k_sig[0]) * zk for zk in z], weights=w, window=win,
                              stepper=EulerStepper(), mode=mode, deviation=DEVIATIONS[dev], on_progress=rec_k)
    assert tr_f.aggregated_steps == tr_k.aggregated_steps == list(range(1, 6))
    assert tr_f.evaluations == tr_k.evaluations
    assert tr_f.norm_ratio == pytest.approx(tr_k.norm_ratio, rel=1e-5)
    assert float(sig[-1]) == float(k_sig[-1]) == 0.0
    assert rel_err(out_f, out_k) < 1e-6
    if DEVIATIONS[dev] is not None:          # the scale matters only for the deviation step's length
        out_eps, _ = amdm_sample(fd, sig, [float(sig[0]) * s * zk for zk in z], weights=w, window=win,
                                 stepper=EulerStepper(), mode=mode, deviation=DEVIATIONS[dev])
        assert rel_err(out_eps, out_k) > 1e-2
    # every member state on the way: x_flow = (1 - sigma_next) x_k; the denoised x0 are the same
    assert len(rec_f.rows) == len(rec_k.rows)
    for (kf, jf, df, xf), (kk, jk, dk, xk) in zip(rec_f.rows, rec_k.rows):
        assert (kf, jf) == (kk, jk)
        assert rel_err(xf, xk * (1.0 - float(sig[jf + 1]))) < 2e-6
        assert rel_err(df, dk) < 2e-6


class FlowAncestral:
    """Test-only flow Euler ancestral: k-diffusion Euler ancestral on the mapped k-state, mapped back.
    Its pre-noise mean (1 - sigma_next) mean_k keeps the x0 coefficient of a flow state at sigma_next,
    as the k-space mean keeps that of sigma_next (the loop converts it with scale(sigma_next))."""
    stochastic = True
    separates_noise = True

    def __init__(self, noise, s):
        self.k, self.s = EulerAncestralStepper(noise), s

    def step(self, den, x, t, t_next, index, stream):
        t, t_next = float(t), float(t_next)
        sk, skn = self.s * t / (1 - t), self.s * t_next / (1 - t_next)
        r = self.k.step(lambda xk, sig, **kw: den(xk * (1 - t), xk.new_full([xk.shape[0]], t)),
                        x / (1 - t), sk, skn, index, stream)
        self.last_denoised = self.k.last_denoised
        return StepResult(r.state * (1 - t_next), r.mean * (1 - t_next), r.mean_sigma / (self.s + r.mean_sigma))

    def run(self, den, x, sigmas, first_index, stream, callback=None):
        for i in range(len(sigmas) - 1):
            x = self.step(den, x, sigmas[i], sigmas[i + 1], first_index + i, stream).state
            if callback is not None:
                callback(first_index + i, self.last_denoised, x)
        return x


@pytest.mark.parametrize("s", [1.0, 8.0])
def test_stochastic_independent_noise_in_flow_units_equals_the_mapped_eps_run(gen, s):
    k, n = 3, 10
    sig, k_sig, fd, kd, z = flow_and_mapped_eps(gen, k, n, 0.95, s)
    win, dev = window_from_steps(1, 4, n), Deviation(step=0.4)
    out_f, _ = amdm_sample(fd, sig, [float(sig[0]) * s * zk for zk in z], weights=[1, 1, 1], window=win,
                           stepper=FlowAncestral(seeded_noise(5), s), deviation=dev, units=flow_units(s))
    out_k, _ = amdm_sample(kd, k_sig, [float(k_sig[0]) * zk for zk in z], weights=[1, 1, 1], window=win,
                           stepper=EulerAncestralStepper(seeded_noise(5)), deviation=dev)
    assert rel_err(out_f, out_k) < 1e-6


@pytest.mark.parametrize("sd", [0.5, 0.7])
def test_amdm_in_edm_units_equals_amdm_on_the_normalised_eps_problem(gen, sd):
    # data std sd * STD; the eps problem is the same data / sd at sigma / sd
    k = 3
    means = [torch.randn(SHAPE, generator=gen) * sd for _ in range(k)]
    edm_d = [gaussian_denoiser(m, STD * sd) for m in means]
    eps_d = [gaussian_denoiser(m / sd, STD) for m in means]
    sig = torch.cat([torch.linspace(math.log(80.0), math.log(0.002), 12).exp(), torch.zeros(1)])
    z = [torch.randn(SHAPE, generator=gen) for _ in range(k)]
    win, dev = window_from_steps(1, 5, 12), Deviation(step=0.4, members="all")
    out_e, tr_e = amdm_sample(edm_d, sig, [float(sig[0]) * zk for zk in z], weights=[1, 1, 1], window=win,
                              stepper=EulerStepper(), deviation=dev, units=edm_units(sd))
    out_n, tr_n = amdm_sample(eps_d, sig / sd, [float(sig[0]) / sd * zk for zk in z], weights=[1, 1, 1],
                              window=win, stepper=EulerStepper(), deviation=dev)
    assert rel_err(out_e, out_n * sd) < 1e-6
    # and the scale matters: eps units on the EDM states take a different deviation step
    out_wrong, _ = amdm_sample(edm_d, sig, [float(sig[0]) * zk for zk in z], weights=[1, 1, 1], window=win,
                               stepper=EulerStepper(), deviation=dev)
    assert rel_err(out_wrong, out_n * sd) > 1e-3


def test_flow_run_can_start_at_sigma_one(gen):
    # FLUX-type schedules start at sigma = 1 (pure noise): no k-space state exists there, VP units do
    sig = flow_sigmas(8, start=1.0)
    assert float(sig[0]) == 1.0
    fd = flow_members(gen, 2)
    z = [torch.randn(SHAPE, generator=gen) for _ in range(2)]
    out, tr = amdm_sample(fd, sig, z, weights=[1, 1], window=window_from_steps(0, 3, 8), stepper=EulerStepper(),
                          deviation=FAITHFUL.deviation, units=flow_units())
    assert torch.isfinite(out).all() and tr.aggregated_steps == [1, 2, 3]
    plain = EulerStepper().run(fd[0], z[0], sig, 0, 0)
    assert rel_err(out, plain) > 1e-3          # the helper did take part


# ---- (3) the default is the previous behaviour, bit for bit -------------------------------------

def test_eps_and_rflow_scales_are_vp_scale_bitwise():
    for sigma in (0.0, 0.0292, 1.0, 3.7, 14.6146, 1e4, torch.tensor(2.5), torch.tensor([0.1, 7.0])):
        for u in (eps_units(), rflow_units(), StateUnits()):
            got, want = u.scale(sigma), vp_scale(sigma)
            assert torch.equal(got, want) if isinstance(want, torch.Tensor) else got == want


SD = DiscreteSchedule.scaled_linear()


@pytest.mark.parametrize("case", ["euler", "ancestral_independent", "ancestral_shared", "reference"])
def test_default_units_are_bitwise_the_eps_path(gen, case):
    sig = SD.ddim_uniform_sigmas(10)
    n = len(sig) - 1
    dens = [gaussian_denoiser(torch.randn(SHAPE, generator=gen), STD) for _ in range(3)]
    z = [torch.randn(SHAPE, generator=gen) * sig[0] for _ in range(3)]
    kw = dict(weights=[1.0, 0.8, 0.5], window=window_from_steps(1, 4, n), deviation=FAITHFUL.deviation)
    if case == "euler":
        kw.update(stepper=EulerStepper())
    elif case == "reference":
        kw.update(stepper=EulerStepper(), deviation=REFERENCE_COMPATIBLE.deviation, schedule=SD,
                  normalize_weights=False)
    else:
        kw.update(stepper=EulerAncestralStepper(seeded_noise(3)), mode="slerp",
                  step_noise="independent" if case == "ancestral_independent" else "shared")
    outs = [amdm_sample(dens, sig, z, **kw)]
    outs += [amdm_sample(dens, sig, z, **kw, units=u) for u in (None, eps_units(), StateUnits("eps"))]
    for o, tr in outs[1:]:
        assert torch.equal(o, outs[0][0]) and tr.norm_ratio == outs[0][1].norm_ratio


@pytest.mark.parametrize("units", [flow_units(), edm_units(0.5), rflow_units()])
def test_reference_target_is_eps_only(gen, units):
    sig = flow_sigmas(6, start=0.9)
    with pytest.raises(ValueError, match="reference mu target"):
        amdm_sample(flow_members(gen, 2), sig, [torch.randn(SHAPE, generator=gen)] * 2, weights=[1, 1],
                    window=window_from_steps(1, 2, 6), stepper=EulerStepper(),
                    deviation=REFERENCE_COMPATIBLE.deviation, schedule=SD, units=units)


def test_units_must_be_a_state_units(gen):
    with pytest.raises(TypeError):
        amdm_sample(flow_members(gen, 1), flow_sigmas(3), [torch.zeros(SHAPE)], weights=[1],
                    window=window_from_steps(1, 1, 3), stepper=EulerStepper(), units="flow")


# ---- (4) sum w^2 = 1 keeps the norm of independent members in flow units ------------------------

@pytest.mark.parametrize("s", [1.0, 8.0])
@pytest.mark.parametrize("sigma", [0.02, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("raw", [[1, 1, 1], [1.0, 0.5, 0.25], [0.9, 0.1]])
def test_spherical_weights_keep_the_vp_norm_of_independent_flow_members(sigma, s, raw):
    g = torch.Generator().manual_seed(11)
    u, w = flow_units(s), spherical_weights(raw)
    states = [(1 - sigma) * torch.randn(4, 4, 64, 64, generator=g) + sigma * s * torch.randn(4, 4, 64, 64, generator=g)
              for _ in raw]
    vp = [u.to_vp(x, sigma) for x in states]
    agg = spherical_aggregate(vp, w)
    root_n = math.sqrt(4 * 64 * 64)
    assert float((batch_norm(agg) / root_n).sub(1).abs().max()) < 0.03
    # back in flow units it has the variance of a flow state at sigma
    assert abs(float(u.from_vp(agg, sigma).var()) / u.scale(sigma) ** 2 - 1) < 0.03


@pytest.mark.parametrize("s", [1.0, 8.0])
def test_loop_norm_ratio_is_one_for_independent_flow_members(gen, s):
    # unit-variance zero-mean data: each member's state stays its own (independent) noise, scaled.
    # One aggregation per run (after it every member holds the aggregate, and no longer independent).
    sig = flow_sigmas(20, start=1.0)
    dens = [flow_gaussian_denoiser(torch.zeros(2, 4, 32, 32), 1.0, s) for _ in range(3)]
    z = [s * torch.randn(2, 4, 32, 32, generator=gen) for _ in range(3)]
    for j in (1, 5, 10, 15, 19):
        _, tr = amdm_sample(dens, sig, z, weights=[1, 1, 1], window=window_from_steps(j, j, 20),
                            stepper=EulerStepper(), units=flow_units(s))
        assert tr.aggregated_steps == [j] and abs(tr.norm_ratio[0] - 1) < 0.05, (j, tr.norm_ratio)
