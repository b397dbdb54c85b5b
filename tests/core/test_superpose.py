"""SuperDiff superposition (amdm_core.superpose) on analytic Gaussian members."""
import math

import pytest
import torch

from amdm_core import (SUPERPOSE_MODES, flow_units, k_space, seeded_noise, superpose_evaluations,
                       superpose_sample)
from amdm_core.analytic import flow_gaussian_denoiser, gaussian_denoiser

SHAPE = (4, 4, 8, 8)


def karras(n, smin=0.03, smax=14.6, rho=7.0):
    r = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (smax ** (1 / rho) + r * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def own_sde(den, sigmas, x, noise):
    """One member's reverse-SDE Euler-Maruyama sample, written out independently."""
    s = [float(v) for v in sigmas]
    for j in range(len(s) - 1):
        d = den(x, x.new_full([x.shape[0]], s[j]))
        if s[j + 1] == 0:
            return d
        v = (x - d) / s[j]
        ds = s[j + 1] - s[j]
        x = x + (v * (2 * ds) + noise(j, 0, x) * math.sqrt(2 * abs(ds) * s[j]))
    return x


def two_gaussians(shape=SHAPE, std=0.3):
    return [gaussian_denoiser(torch.full(shape, -1.0), std), gaussian_denoiser(torch.full(shape, 1.0), std)]


def start(gen, sigmas, shape=SHAPE):
    return torch.randn(shape, generator=gen) * sigmas[0]


@pytest.mark.parametrize("k", [2, 3])
def test_or_with_identical_members_is_that_members_own_sde_sample(gen, k):
    s = karras(30)
    den = gaussian_denoiser(torch.randn(SHAPE, generator=gen), 0.5)
    x = start(gen, s)
    out, tr = superpose_sample([den] * k, s, x, noise=seeded_noise(5), mode="or")
    ref = own_sde(den, s, x, seeded_noise(5))
    if k == 2:
        assert torch.equal(out, ref)                     # kappa = 1/2 exactly: v/2 + v/2 == v
    else:
        assert torch.allclose(out, ref, rtol=0, atol=1e-5)   # 1/3 rounds (measured max 7e-7)
    assert all(torch.equal(kap, torch.full_like(kap, 1 / k)) for kap in tr.kappa)
    assert tr.evaluations == [30] * k and tr.total_evaluations == 30 * k and tr.steps == 30


def test_or_kappa_is_a_per_sample_distribution_and_picks_a_mode(gen):
    s = karras(60)
    out, tr = superpose_sample(two_gaussians(), s, start(gen, s), noise=seeded_noise(1), mode="or")
    for k in tr.kappa:
        assert k.shape == (SHAPE[0], 2)
        assert torch.allclose(k.sum(1), torch.ones(SHAPE[0], dtype=torch.float64), atol=1e-12)
        assert (k >= 0).all()
    last = tr.kappa[-1][:, 0]
    assert ((last < 1e-6) | (last > 1 - 1e-6)).all()              # every sample settled on one member
    means = out.flatten(1).mean(1)
    assert torch.allclose(means.abs(), torch.ones_like(means), atol=0.1)
    assert torch.equal(means < 0, last > 0.5)                       # ... and sits at that member's mean


def test_or_huge_log_prior_picks_that_member(gen):
    s = karras(20)
    dens = two_gaussians()
    x = start(gen, s)
    for pick in (0, 1):
        prior = [1e6 if k == pick else 0.0 for k in range(2)]
        out, tr = superpose_sample(dens, s, x, noise=seeded_noise(2), log_prior=prior)
        assert all(torch.equal(k[:, pick], torch.ones(SHAPE[0], dtype=torch.float64)) for k in tr.kappa)
        assert torch.allclose(out, own_sde(dens[pick], s, x, seeded_noise(2)), rtol=0, atol=1e-6)


def test_or_temperature_zero_keeps_the_prior():
    s = karras(10)
    _, tr = superpose_sample(two_gaussians(), s, torch.randn(SHAPE) * s[0], noise=seeded_noise(0),
                             temperature=0.0, log_prior=[math.log(3.0), 0.0])
    assert all(torch.allclose(k[:, 0], torch.full([SHAPE[0]], 0.75, dtype=torch.float64)) for k in tr.kappa)


@pytest.mark.parametrize("k", [2, 3])
def test_and_keeps_the_tracked_log_densities_equal(gen, k):
    s = karras(40)
    dens = [gaussian_denoiser(torch.randn(SHAPE, generator=gen) * 0.5, 0.4 + 0.1 * i) for i in range(k)]
    out, tr = superpose_sample(dens, s, start(gen, s), noise=seeded_noise(3), mode="and")
    assert torch.isfinite(out).all()
    scale = max(float(ll.abs().max()) for ll in tr.log_density)
    assert scale > 1.0                                              # the densities did move
    for ll, kap in zip(tr.log_density, tr.kappa):
        assert float((ll - ll[:, :1]).abs().max()) <= 1e-8 * scale
        assert torch.allclose(kap.sum(1), torch.ones(SHAPE[0], dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("shared_cfg", [False, True])
def test_and_two_members_is_the_reference_closed_form(gen, shared_cfg):
    """One step with a log prior offset: kappa_1 = [|ds| <v2-v1, v2+v1> - <dx_ind, v1-v2> + sigma g]
    / (2 ds c |v1-v2|^2), dx_ind the step with member 2 alone (module docstring)."""
    s = karras(10)
    dens = two_gaussians()
    un = gaussian_denoiser(torch.zeros(SHAPE), 1.0) if shared_cfg else None
    c = 3.0 if shared_cfg else 1.0
    x = start(gen, s)
    prior = [0.5, 0.0]
    _, tr = superpose_sample(dens, s[:2], x, noise=seeded_noise(9), mode="and", log_prior=prior, uncond=un, cfg=c)
    sig, ds = float(s[0]), float(s[1] - s[0])
    sin = x.new_full([SHAPE[0]], sig)
    v1, v2 = ((x - d(x, sin)) / sig for d in dens)
    vu = (x - un(x, sin)) / sig if un is not None else torch.zeros_like(x)
    xi = seeded_noise(9)(0, 0, x) * math.sqrt(2 * abs(ds) * sig)
    dx_ind = 2 * ds * (vu + c * (v2 - vu)) + xi

    def dot(a, b):
        return (a.double() * b.double()).flatten(1).sum(1)
    g = prior[0] - prior[1]
    kappa = (abs(ds) * dot(v2 - v1, v2 + v1) - dot(dx_ind, v1 - v2) + sig * g) / (2 * ds * c * dot(v1 - v2, v1 - v2))
    assert torch.allclose(tr.kappa[0][:, 0], kappa, rtol=1e-6, atol=1e-9)
    ll = tr.log_density[0]
    assert torch.allclose(ll[:, 0] + prior[0], ll[:, 1] + prior[1], rtol=0, atol=1e-6 * float(ll.abs().max()))
    assert tr.uncond_evaluations == (1 if shared_cfg else 0)


@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (2, 4, 3, 8, 8)])
@pytest.mark.parametrize("mode", SUPERPOSE_MODES)
def test_image_and_video_shapes(shape, mode):
    s = karras(12)
    g = torch.Generator().manual_seed(0)
    dens = [gaussian_denoiser(torch.randn(shape, generator=g), 0.5) for _ in range(2)]
    out, tr = superpose_sample(dens, s, torch.randn(shape, generator=g) * s[0], noise=seeded_noise(4), mode=mode)
    assert out.shape == shape and torch.isfinite(out).all()
    assert all(k.shape == (2, 2) and ll.shape == (2, 2) for k, ll in zip(tr.kappa, tr.log_density))


def test_seeded_reproducibility_and_half_precision(gen):
    s = karras(15)
    x = start(gen, s)
    a, _ = superpose_sample(two_gaussians(), s, x, noise=seeded_noise(7))
    b, _ = superpose_sample(two_gaussians(), s, x, noise=seeded_noise(7))
    c, _ = superpose_sample(two_gaussians(), s, x, noise=seeded_noise(8))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    h, _ = superpose_sample(two_gaussians(), s, x.half(), noise=seeded_noise(7))
    assert h.dtype == torch.float16 and torch.isfinite(h).all()


def test_shared_cfg_costs_one_more_evaluation_and_cfg_one_is_the_members_field(gen):
    s = karras(10)
    dens = two_gaussians()
    x = start(gen, s)
    plain, tr = superpose_sample(dens, s, x, noise=seeded_noise(1))
    un = gaussian_denoiser(torch.zeros(SHAPE), 1.0)
    shared, tr2 = superpose_sample(dens, s, x, noise=seeded_noise(1), uncond=un, cfg=1.0)
    assert torch.allclose(plain, shared, atol=1e-5)
    assert tr.total_evaluations == 20 == superpose_evaluations(2) * 10
    assert tr2.total_evaluations == 30 == superpose_evaluations(2, shared_cfg=True) * 10


def test_flow_members_run_in_k_space(gen):
    """Flow Gaussian members through k_space equal the same members as k-diffusion denoisers."""
    s_noise = 1.5
    t = torch.linspace(0.97, 0.0, 21, dtype=torch.float64)
    flow_sig = (3 * t / (1 + 2 * t)).float()                     # shifted flow schedule below 1
    ks = k_space(flow_units(s_noise), flow_sig)
    means = [torch.randn(SHAPE, generator=gen) for _ in range(2)]
    flow = [ks.denoiser(flow_gaussian_denoiser(m, 0.5, s_noise)) for m in means]
    eps = [gaussian_denoiser(m, 0.5) for m in means]
    x_flow = torch.randn(SHAPE, generator=gen) * s_noise * flow_sig[0] + (1 - flow_sig[0]) * means[0]
    x_k = ks.to_k(x_flow, 0)
    assert torch.allclose(ks.from_k(x_k, 0), x_flow, atol=1e-6)
    assert torch.allclose(ks.k_sigmas, (s_noise * flow_sig.double() / (1 - flow_sig.double())).float())
    for mode in SUPERPOSE_MODES:
        a, ta = superpose_sample(flow, ks.k_sigmas, x_k, noise=seeded_noise(6), mode=mode)
        b, tb = superpose_sample(eps, ks.k_sigmas, x_k, noise=seeded_noise(6), mode=mode)
        assert torch.allclose(ks.from_k(a, len(flow_sig) - 1), b, rtol=1e-4, atol=1e-4)
        assert torch.allclose(ta.kappa[-1], tb.kappa[-1], atol=1e-3)


def test_flow_schedule_from_one_gets_a_finite_start_and_the_hosts_sigma(gen):
    t = torch.linspace(1.0, 0.0, 11)
    ks = k_space(flow_units(), t)
    k1, k2 = float(ks.k_sigmas[1]), float(ks.k_sigmas[2])
    assert float(ks.k_sigmas[0]) == pytest.approx(k1 * k1 / k2, rel=1e-6)
    seen = []
    den = ks.denoiser(lambda x, sigma: seen.append((x, sigma)) or x * 0)
    x = torch.randn(SHAPE, generator=gen)                      # the host's pure noise at sigma 1
    den(ks.to_k(x, 0), torch.full([SHAPE[0]], float(ks.k_sigmas[0])))
    assert torch.equal(seen[0][1], torch.ones(SHAPE[0])) and torch.allclose(seen[0][0], x, atol=1e-6)
    assert float(k_space(flow_units(), t, sigma_cap=500.0).k_sigmas[0]) == 500.0
    assert torch.equal(k_space(None, karras(5)).to_k(x, 2), x)            # eps: the identity


def test_bad_inputs_name_the_input():
    s = karras(5)
    dens = two_gaussians()
    x = torch.randn(SHAPE) * s[0]
    kw = dict(noise=seeded_noise(0))
    with pytest.raises(ValueError, match="'denoisers'"):
        superpose_sample(dens[:1], s, x, **kw)
    with pytest.raises(ValueError, match="'sigmas'"):
        superpose_sample(dens, s.flip(0), x, **kw)
    with pytest.raises(ValueError, match="'sigmas'"):
        superpose_sample(dens, torch.tensor([5.0, 5.0, 0.0]), x, **kw)
    with pytest.raises(ValueError, match="'mode'"):
        superpose_sample(dens, s, x, mode="xor", **kw)
    with pytest.raises(ValueError, match="'temperature'"):
        superpose_sample(dens, s, x, mode="and", temperature=2.0, **kw)
    with pytest.raises(ValueError, match="'temperature'"):
        superpose_sample(dens, s, x, temperature=-1.0, **kw)
    with pytest.raises(ValueError, match="'cfg'"):
        superpose_sample(dens, s, x, cfg=3.0, **kw)
    with pytest.raises(ValueError, match="'log_prior'"):
        superpose_sample(dens, s, x, log_prior=[0.0, 1.0, 2.0], **kw)
    with pytest.raises(ValueError, match="'x'"):
        superpose_sample(dens, s, torch.randn(4), **kw)
    with pytest.raises(ValueError, match="flow 'sigmas'"):
        k_space(flow_units(), torch.tensor([1.2, 0.5, 0.0]))
    with pytest.raises(ValueError, match="'units'"):
        k_space("flow", s)
