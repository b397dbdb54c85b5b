import math

import pytest
import torch

from amdm_core import (batch_norm, deviation_step, from_vp, step_from_reference, step_length, step_to_absolute,
                       to_vp)

SHAPE = (3, 4, 32, 32)
N = 4 * 32 * 32


def dist(a, b):
    return batch_norm(a - b).flatten()


@pytest.fixture
def pair(gen):
    return torch.randn(SHAPE, generator=gen) * 5, torch.randn(SHAPE, generator=gen) * 5


def test_zero_step_is_identity(pair):
    x, mu = pair
    for mode in ("absolute", "clamped", "relative"):
        assert torch.equal(deviation_step(x, mu, 0.0, mode), x)


@pytest.mark.parametrize("p", [10.0, 200.0, 500.0])
def test_absolute_distance_and_direction(pair, p):
    x, mu = pair
    d = dist(x, mu)
    out = deviation_step(x, mu, p, "absolute", scale="absolute")
    assert torch.allclose(dist(out, mu), (d - p).abs(), rtol=1e-4, atol=1e-3)
    # out - mu is a positive multiple of x - mu before mu, a negative one past it (overshoot)
    cos = ((out - mu).flatten(1) * (x - mu).flatten(1)).sum(1) / (dist(out, mu) * d)
    expected = torch.where(p < d, torch.ones_like(d), -torch.ones_like(d))
    assert torch.allclose(cos, expected, atol=1e-4)


def test_clamped_never_passes_mu(pair):
    x, mu = pair
    far = float(dist(x, mu).max()) * 2
    assert torch.allclose(deviation_step(x, mu, far, "clamped", scale="absolute"), mu, atol=1e-4)
    near = float(dist(x, mu).min()) / 2
    assert torch.allclose(deviation_step(x, mu, near, "clamped", scale="absolute"),
                          deviation_step(x, mu, near, "absolute", scale="absolute"))


def test_relative_mode(pair):
    x, mu = pair
    assert torch.allclose(deviation_step(x, mu, 1.0, "relative"), mu, atol=1e-5)
    assert torch.allclose(deviation_step(x, mu, 0.5, "relative"), (x + mu) / 2, atol=1e-5)


def test_no_nan_when_on_mu(pair):
    x, _ = pair
    for mode in ("absolute", "clamped", "relative"):
        out = deviation_step(x, x.clone(), 0.5, mode)
        assert torch.equal(out, x)


def test_per_sqrt_n_scale_is_resolution_independent(pair):
    x, mu = pair
    out = deviation_step(x, mu, 0.35, "absolute")
    assert torch.allclose(dist(x, out), torch.full((3,), 0.35 * math.sqrt(N)), rtol=1e-5)
    assert step_to_absolute(0.35, N) == pytest.approx(0.35 * 64)


def test_reference_p_mapping():
    assert step_from_reference(45) == pytest.approx(0.3515625)
    assert step_from_reference(55) == pytest.approx(0.4296875)
    assert step_to_absolute(step_from_reference(45), 4 * 64 * 64) == pytest.approx(45)


@pytest.mark.parametrize("sigma", [0.03, 1.0, 14.6])
def test_gradient_equivalence(pair, sigma):
    """One normalised gradient-ascent step on log N(x; mu, sigma^2 I) is the deviation step."""
    x, mu = pair
    xg = x.clone().double().requires_grad_(True)
    logp = -((xg - mu.double()) ** 2).flatten(1).sum(1) / (2 * sigma ** 2)
    (g,) = torch.autograd.grad(logp.sum(), xg)
    p = 30.0
    expected = xg.detach() + p * g / batch_norm(g).double()
    out = deviation_step(x, mu, p, "absolute", scale="absolute")
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-4)


def test_per_sample_independence_and_per_sample_step(pair):
    x, mu = pair
    out = deviation_step(x, mu, 0.2)
    mu2 = mu.clone()
    mu2[2] += 7
    out2 = deviation_step(x, mu2, 0.2)
    assert torch.equal(out[:2], out2[:2]) and not torch.allclose(out[2], out2[2])
    steps = torch.tensor([0.0, 0.1, 0.2])
    per = deviation_step(x, mu, steps)
    for b in range(3):
        assert torch.allclose(per[b:b + 1], deviation_step(x[b:b + 1], mu[b:b + 1], float(steps[b])))


@pytest.mark.parametrize("sigma", [0.5, 6.0, 14.6])
def test_unit_conversion_vp_vs_k_space(pair, sigma):
    """A step p in VP units equals a step p*sqrt(1+sigma^2) on the k-space states."""
    x_vp, mu_vp = pair
    p = 40.0
    in_vp = deviation_step(x_vp, mu_vp, p, scale="absolute")
    c = math.sqrt(1 + sigma ** 2)
    in_k = deviation_step(from_vp(x_vp, sigma), from_vp(mu_vp, sigma), p * c, scale="absolute")
    assert rel_err(to_vp(in_k, sigma), in_vp) < 1e-6


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_vp_roundtrip_and_value(gen):
    x = torch.randn(2, 4, 8, 8, generator=gen)
    assert torch.allclose(to_vp(x, 3.0), x / math.sqrt(10.0))
    assert torch.allclose(from_vp(to_vp(x, 3.0), 3.0), x, rtol=1e-6)
    per_sample = torch.tensor([0.0, 3.0])
    v = to_vp(x, per_sample)
    assert torch.allclose(v[0], x[0]) and torch.allclose(v[1], x[1] / math.sqrt(10.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(pair, dtype):
    x, mu = pair
    out = deviation_step(x.to(dtype), mu.to(dtype), 0.35)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert rel_err(out.float(), deviation_step(x, mu, 0.35)) < 1e-2


def test_bad_mode_rejected(pair):
    x, mu = pair
    with pytest.raises(ValueError, match="deviation mode 'bogus' is unknown"):
        deviation_step(x, mu, 0.1, "bogus")


@pytest.mark.parametrize("side", [64, 128])
def test_step_length_per_unit_and_resolution(side):
    """per_sqrt_reference keeps the reference code's absolute p at every resolution (p/128 at any n);
    per_sqrt_n scales with sqrt(n); absolute is the L2 distance itself."""
    n = 4 * side * side
    assert step_length(step_from_reference(45), "per_sqrt_reference", n) == pytest.approx(45, rel=1e-12)
    assert step_length(step_from_reference(45), "per_sqrt_n", n) == pytest.approx(45 * side / 64, rel=1e-12)
    assert step_length(45.0, "absolute", n) == 45.0
    with pytest.raises(ValueError, match="step scale 'pixels' is unknown"):
        step_length(1.0, "pixels", n)


def test_per_sqrt_reference_moves_the_reference_distance(gen):
    x, mu = torch.randn(2, 4, 128, 128, generator=gen) * 5, torch.randn(2, 4, 128, 128, generator=gen) * 5
    out = deviation_step(x, mu, step_from_reference(45), "absolute", scale="per_sqrt_reference")
    assert torch.allclose(dist(x, out), torch.full((2,), 45.0), rtol=1e-5)
    # relative mode reads a fraction: the unit does not apply
    assert torch.equal(deviation_step(x, mu, 0.5, "relative", scale="per_sqrt_reference"),
                       deviation_step(x, mu, 0.5, "relative"))
