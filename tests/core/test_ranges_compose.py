import math

import pytest
import torch

from amdm_core import DiscreteSchedule, EulerStepper, amdm_sample, window_from_steps
from amdm_core.analytic import gaussian_denoiser
from amdm_core.compose import compose_predictions
from amdm_core.ranges import ALWAYS, NoiseRange, steps_in_range

SD = DiscreteSchedule.scaled_linear()


def test_noise_range_is_half_open_so_adjacent_ranges_hand_off():
    a, b = NoiseRange(math.inf, 2.0), NoiseRange(2.0, 0.0)
    for s in (14.6, 2.0001, 2.0, 1.9999, 0.03):
        assert a.contains(s) != b.contains(s)
    assert ALWAYS.everywhere and ALWAYS.contains(1e9) and ALWAYS.contains(1e-9)
    with pytest.raises(ValueError, match="invalid"):
        NoiseRange(1.0, 2.0)


def test_steps_in_range_uses_each_steps_starting_sigma():
    sig = SD.ddim_uniform_sigmas(10)
    flags = steps_in_range(NoiseRange(float(sig[2]), float(sig[6])), sig)
    assert flags == [False, False, True, True, True, True, False, False, False, False]


def test_compose_average_and_composable_formulas(gen):
    d = [torch.randn(2, 8, generator=gen) for _ in range(3)]
    u = [torch.randn(2, 8, generator=gen) for _ in range(3)]
    w = [1.0, 2.0, 0.5]
    avg = compose_predictions(d, None, w, "average")
    assert torch.allclose(avg, (d[0] * 1 + d[1] * 2 + d[2] * 0.5) / 3.5, atol=1e-6)
    comp = compose_predictions(d, u, w, "composable")
    assert torch.allclose(comp, (u[0] + u[1] + u[2]) / 3 + sum(wk * (dk - uk) for wk, dk, uk in zip(w, d, u)), atol=1e-6)
    # one member, weight 1: its own CFG result
    assert torch.allclose(compose_predictions(d[:1], u[:1], [1.0], "composable"), d[0], atol=1e-6)
    with pytest.raises(ValueError, match="unconditional"):
        compose_predictions(d, None, w, "composable")
    with pytest.raises(ValueError, match="unknown"):
        compose_predictions(d, u, w, "sum")


def _members(gen, k, shape=(1, 4, 8, 8)):
    return [gaussian_denoiser(torch.randn(shape, generator=gen), 0.5) for _ in range(k)]


def test_helper_active_late_joins_from_the_base_state_and_costs_only_its_steps(gen):
    sig = SD.ddim_uniform_sigmas(12)
    n = len(sig) - 1                     # the host's ddim_uniform grid: 12 asked -> 13 steps
    dens = _members(gen, 2)
    zs = [torch.randn(1, 4, 8, 8, generator=gen) * sig[0] for _ in range(2)]
    active = [[True] * n, [j >= 3 for j in range(n)]]
    out, tr = amdm_sample(dens, sig, zs, weights=[1, 1], window=window_from_steps(1, 6, n), stepper=EulerStepper(),
                          active=active)
    assert tr.evaluations == [n, 4]                       # steps 3..6
    assert tr.aggregated_steps == [3, 4, 5, 6]
    # joining at step 3 from the base state == a run whose helper starts from the base state there
    with pytest.raises(ValueError, match="base member must be active"):
        amdm_sample(dens, sig, zs, weights=[1, 1], window=window_from_steps(1, 6, n), stepper=EulerStepper(),
                    active=[[j > 0 for j in range(n)], [True] * n])


def test_weights_are_renormalised_over_the_members_of_a_step(gen):
    """Three members, the third active only from step 2: at step 1 the two active members get
    weights of unit norm among themselves (identical states under slerp stay identical)."""
    sig = SD.ddim_uniform_sigmas(6)
    n = len(sig) - 1
    d = _members(gen, 1)[0]
    z = torch.randn(1, 4, 8, 8, generator=gen) * sig[0]
    active = [[True] * n, [True] * n, [j >= 2 for j in range(n)]]
    out, tr = amdm_sample([d, d, d], sig, [z, z, z], weights=[1, 2, 3], window=window_from_steps(1, 3, n),
                          stepper=EulerStepper(), mode="slerp", active=active)
    plain = EulerStepper().run(d, z, sig, 0, 0)
    assert torch.allclose(out, plain, rtol=1e-5, atol=1e-5)
    assert tr.norm_ratio == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
