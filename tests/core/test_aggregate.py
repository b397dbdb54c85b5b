import math

import pytest
import torch

from amdm_core import batch_norm, nested_weights, slerp2, spherical_aggregate

SHAPE = (2, 4, 64, 64)
N = 4 * 64 * 64


def orthogonal_pair(gen, shape=SHAPE):
    a = torch.randn(shape, generator=gen, dtype=torch.float64)
    b = torch.randn(shape, generator=gen, dtype=torch.float64)
    af, bf = a.flatten(1), b.flatten(1)
    bf = bf - (bf * af).sum(1, keepdim=True) / (af * af).sum(1, keepdim=True) * af   # Gram-Schmidt
    bf = bf / bf.norm(dim=1, keepdim=True) * af.norm(dim=1, keepdim=True)            # equal norm
    return a.float(), bf.view(shape).float()


def rel(a, b):
    return float((a - b).flatten(1).norm(dim=1).max() / b.flatten(1).norm(dim=1).min())


@pytest.mark.parametrize("omega", [0.1, 0.5, 0.8])
def test_orthogonal_equal_norm_inputs_keep_the_norm(gen, omega):
    a, b = orthogonal_pair(gen)
    out = spherical_aggregate([a, b], nested_weights([omega]))
    assert torch.allclose(batch_norm(out), batch_norm(a), rtol=1e-6)


def test_iid_gaussian_inputs_keep_the_norm_approximately(gen):
    a, b = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    out = spherical_aggregate([a, b], nested_weights([0.5]))
    ratio = batch_norm(out).flatten() / math.sqrt(N)
    assert float((ratio - 1).abs().max()) < 2e-2


@pytest.mark.parametrize("mode", ["spherical", "slerp"])
def test_endpoints_are_exact(gen, mode):
    a, b = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    assert torch.equal(spherical_aggregate([a, b], [1.0, 0.0], mode), a)
    out = spherical_aggregate([a, b], [0.0, 1.0], mode)
    assert torch.allclose(out, b, rtol=1e-5, atol=1e-5)
    if mode == "spherical":
        assert torch.equal(out, b)


def test_identical_inputs_inflate_in_spherical_mode_and_not_in_slerp(gen):
    x = torch.randn(SHAPE, generator=gen)
    w = nested_weights([0.5])
    inflated = spherical_aggregate([x, x], w, "spherical")
    assert torch.allclose(inflated, x * 1.3660254, rtol=1e-6)
    same = spherical_aggregate([x, x], w, "slerp")
    assert rel(same, x) < 1e-6


@pytest.mark.parametrize("omega", [0.2, 0.5, 0.9])
def test_slerp_equals_spherical_on_orthogonal_equal_norm_inputs(gen, omega):
    a, b = orthogonal_pair(gen)
    w = nested_weights([omega])
    assert rel(spherical_aggregate([a, b], w, "slerp"), spherical_aggregate([a, b], w)) < 1e-5


def test_slerp_close_to_spherical_on_iid_inputs(gen):
    a, b = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    w = nested_weights([0.5])
    # iid states are only nearly orthogonal (|cos| ~ 1/sqrt(n)) and of nearly equal norm: the two
    # operators then differ at first order in those deviations, well under 1 %.
    diff = rel(spherical_aggregate([a, b], w, "slerp"), spherical_aggregate([a, b], w))
    assert 1e-4 < diff < 1e-2


def test_three_member_slerp_equals_spherical_on_mutually_orthogonal_inputs(gen):
    q, _ = torch.linalg.qr(torch.randn(64, 3, generator=gen, dtype=torch.float64))
    xs = [(q[:, i] * 8.0).float().view(1, 64) for i in range(3)]
    w = nested_weights([0.47, 0.5])
    assert rel(spherical_aggregate(xs, w, "slerp"), spherical_aggregate(xs, w)) < 1e-5


@pytest.mark.parametrize("tau", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_slerp_geometry_angle_and_norm(gen, tau):
    a = torch.randn(3, 512, generator=gen)
    b = torch.randn(3, 512, generator=gen) * 2.0 + 0.5 * a
    out = slerp2(a, b, tau)

    def angle(u, v):
        c = (u * v).sum(1) / (u.norm(dim=1) * v.norm(dim=1))
        return torch.acos(c.clamp(-1, 1))
    assert torch.allclose(angle(a, out), tau * angle(a, b), atol=2e-4)
    assert torch.allclose(out.norm(dim=1), (1 - tau) * a.norm(dim=1) + tau * b.norm(dim=1), rtol=1e-5)


def test_slerp_finite_for_parallel_and_antiparallel(gen):
    a = torch.randn(2, 256, generator=gen)
    for b in (a * 3.0, -a, a.clone()):
        out = slerp2(a, b, 0.4)
        assert torch.isfinite(out).all()
        assert torch.allclose(out.norm(dim=1), 0.6 * a.norm(dim=1) + 0.4 * b.norm(dim=1), rtol=1e-5)
    assert torch.allclose(slerp2(a, a * 3.0, 0.5), a * 2.0, rtol=1e-5)


@pytest.mark.parametrize("mode", ["spherical", "slerp"])
def test_per_sample_independence(gen, mode):
    a, b = torch.randn(SHAPE, generator=gen), torch.randn(SHAPE, generator=gen)
    w = nested_weights([0.4])
    out = spherical_aggregate([a, b], w, mode)
    b2 = b.clone()
    b2[1] = b2[1] * 5.0 + 3.0
    out2 = spherical_aggregate([a, b2], w, mode)
    assert torch.equal(out[0], out2[0])
    assert not torch.allclose(out[1], out2[1])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["spherical", "slerp"])
def test_half_precision_inputs(gen, dtype, mode):
    a = (torch.randn(SHAPE, generator=gen) * 14.6).to(dtype)     # sigma_max-scale states
    b = (torch.randn(SHAPE, generator=gen) * 14.6).to(dtype)
    out = spherical_aggregate([a, b], nested_weights([0.5]), mode)
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = spherical_aggregate([a.float(), b.float()], nested_weights([0.5]), mode)
    assert rel(out.float(), ref) < 1e-2


def test_bad_inputs_are_rejected(gen):
    a = torch.randn(1, 8, generator=gen)
    with pytest.raises(ValueError, match="aggregation mode 'mean' is unknown"):
        spherical_aggregate([a, a], [0.5, 0.5], "mean")
    with pytest.raises(ValueError, match="2 states but 3 weights"):
        spherical_aggregate([a, a], [0.5, 0.5, 0.1])
    with pytest.raises(ValueError, match=r"state 1 has shape \(1, 9\)"):
        spherical_aggregate([a, torch.zeros(1, 9)], [0.5, 0.5])
