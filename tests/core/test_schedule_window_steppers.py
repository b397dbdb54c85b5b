import math

import pytest
import torch

from amdm_core import (EMPTY_WINDOW, DiscreteSchedule, EulerAncestralStepper, EulerStepper, StepWindow,
                       ancestral_sigmas, code_exact_coefficients, seeded_noise, window_from_sigmas,
                       window_from_steps)

from amdm_core.analytic import gaussian_denoiser

SD = DiscreteSchedule.scaled_linear()


def test_ddim_uniform_grid_is_diffusers_leading_with_offset_one():
    s = SD.ddim_uniform_sigmas(50)
    assert len(s) == 51 and float(s[-1]) == 0.0
    assert [SD.timestep(float(v)) for v in s[:3]] == [981, 961, 941]
    assert SD.timestep(float(s[49])) == 1
    assert [SD.timestep(float(v)) for v in SD.ddim_uniform_sigmas(10)[:3]] == [901, 801, 701]


def test_code_exact_mu_coefficients_regression():
    """The reference's mu at 50 steps, t_i = 961 uses alpha of t_i + 20 = 981; 10 steps t_i = 601 -> 701."""
    cx, ce = code_exact_coefficients(SD, 981)
    assert cx == pytest.approx(1.0059, abs=1e-4) and ce == pytest.approx(0.0118, abs=1e-4)
    cx, ce = code_exact_coefficients(SD, 701)
    assert cx == pytest.approx(1.0037, abs=1e-4) and ce == pytest.approx(0.0077, abs=1e-4)


def test_schedule_from_sigmas_round_trips():
    again = DiscreteSchedule.from_sigmas(SD.sigmas)
    assert torch.allclose(again.alphas_cumprod, SD.alphas_cumprod, rtol=1e-12)
    assert again.alpha(500) == pytest.approx(SD.alpha(500), rel=1e-12)


def test_ddim_eta0_step_equals_euler_step(gen):
    """One diffusers DDIM (eta 0) step in VP units == one k-space Euler step after rescaling."""
    mean = torch.randn(1, 4, 8, 8, generator=gen)
    D = gaussian_denoiser(mean, 0.7)
    x_vp = torch.randn(1, 4, 8, 8, generator=gen, dtype=torch.float64)
    for t, t_prev in ((981, 961), (501, 481), (41, 21)):
        ab, ab_prev = SD.alpha_bar(t), SD.alpha_bar(t_prev)
        s, s_prev = math.sqrt((1 - ab) / ab), math.sqrt((1 - ab_prev) / ab_prev)
        x_k = x_vp * math.sqrt(1 + s * s)
        x0 = D(x_k, torch.tensor([s], dtype=torch.float64))
        eps = (x_vp - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        ddim = math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps
        euler = EulerStepper().step(D, x_k, torch.tensor(s, dtype=torch.float64),
                                    torch.tensor(s_prev, dtype=torch.float64), 0, 0).state
        assert float(((euler / math.sqrt(1 + s_prev ** 2)) - ddim).norm() / ddim.norm()) < 1e-6


def test_window_by_steps_follows_reference_semantics():
    w = window_from_steps(1, 3, 20)
    assert (w.start, w.end, w.helper_steps) == (1, 3, 4)
    assert 0 not in window_from_steps(0, 3, 20)          # step 0 never aggregates
    assert window_from_steps(0, 3, 20).start == 1
    assert window_from_steps(5, 100, 10).end == 9        # clamped to the schedule
    assert window_from_steps(4, 2, 10).empty and window_from_steps(4, 2, 10).helper_steps == 0
    assert window_from_steps(0, 0, 10).empty


def test_window_by_sigma_keeps_its_meaning_across_step_counts():
    lo, hi = 4.0, 100.0
    for n in (10, 20, 50):
        s = SD.ddim_uniform_sigmas(n)
        w = window_from_sigmas(hi, lo, s)
        inside = [j for j in range(1, n) if lo <= float(s[j]) <= hi]
        assert (w.start, w.end) == (inside[0], inside[-1])
        assert float(s[w.end]) >= lo and float(s[w.end + 1]) < lo
    assert window_from_sigmas(0.5, 0.4, SD.ddim_uniform_sigmas(5)).empty
    with pytest.raises(ValueError, match="below sigma_low"):
        window_from_sigmas(1.0, 2.0, SD.ddim_uniform_sigmas(5))


def test_ancestral_sigmas_match_k_diffusion_formula():
    down, up = ancestral_sigmas(10.0, 5.0, 1.0)
    assert up == pytest.approx(math.sqrt(25 * (100 - 25) / 100))
    assert down == pytest.approx(math.sqrt(25 - up * up))
    assert ancestral_sigmas(10.0, 0.0) == (0.0, 0.0)


def test_euler_ancestral_step_splits_mean_and_noise(gen):
    D = gaussian_denoiser(torch.zeros(1, 2, 4, 4), 1.0)
    x = torch.randn(1, 2, 4, 4, generator=gen) * 10
    st = EulerAncestralStepper(seeded_noise(3))
    r = st.step(D, x, 10.0, 5.0, index=2, stream=1)
    down, up = ancestral_sigmas(10.0, 5.0)
    assert r.mean_sigma == pytest.approx(down)
    assert torch.allclose(r.noise, seeded_noise(3)(2, 1, x) * up, atol=1e-6)
    assert not torch.equal(seeded_noise(3)(2, 1, x), seeded_noise(3)(2, 0, x))   # streams independent
    assert torch.equal(seeded_noise(3)(2, 1, x), seeded_noise(3)(2, 1, x))       # and reproducible


# The host's ddim_uniform grid, derived by hand from its rule (training indices 1, 1 + d, 1 + 2d, ...
# below T = 1000 with d = T // N, descending, then sigma 0): N that does not divide the grid evenly
# gets one more step than asked (N = 7: d = 142 reaches index 995), never an early jump to sigma 0.
HOST_DDIM_UNIFORM = {
    1: [1],
    7: [995, 853, 711, 569, 427, 285, 143, 1],
    15: [991, 925, 859, 793, 727, 661, 595, 529, 463, 397, 331, 265, 199, 133, 67, 1],
    20: [951, 901, 851, 801, 751, 701, 651, 601, 551, 501, 451, 401, 351, 301, 251, 201, 151, 101, 51, 1],
    30: [991 - 33 * i for i in range(31)],
    50: [981 - 20 * i for i in range(50)],
    999: [999 - i for i in range(999)],
    1000: [999 - i for i in range(999)],         # d = 1: every index 1..999, the host's cap
}


@pytest.mark.parametrize("n", sorted(HOST_DDIM_UNIFORM))
def test_ddim_uniform_is_the_hosts_grid_for_every_step_count(n):
    idx = HOST_DDIM_UNIFORM[n]
    assert idx[-1] == 1 and all(a > b for a, b in zip(idx, idx[1:]))
    s = SD.ddim_uniform_sigmas(n)
    assert s.dtype == torch.float32 and float(s[-1]) == 0.0
    assert torch.equal(s[:-1], SD.sigmas[idx].float())


def test_ddim_uniform_with_a_zero_first_sigma_ends_on_it_like_the_host():
    """The host's other branch: when sigma at training index 1 is ~0 it is the last sigma (no extra
    0 appended) and the stride is T // (N + 1)."""
    sig = SD.sigmas.clone()
    sig[1] = 0.0
    sched = DiscreteSchedule.from_sigmas(sig)
    s = sched.ddim_uniform_sigmas(10)                  # d = 1000 // 11 = 90: indices 991, 901, ..., 1
    assert torch.equal(s, sched.sigmas[[991 - 90 * i for i in range(12)]].float())
    assert float(s[-1]) == 0.0 and len(s) == 12


def test_ddim_uniform_refuses_no_steps():
    with pytest.raises(ValueError, match="steps = 0"):
        SD.ddim_uniform_sigmas(0)


@pytest.mark.parametrize("start, end, field", [(0, 3, "start"), (-1, 3, "start"), (1.5, 3, "start"),
                                                (1, 2.5, "end"), (True, 3, "start")])
def test_step_window_refuses_bad_fields_by_name(start, end, field):
    with pytest.raises(ValueError, match=f"StepWindow {field}"):
        StepWindow(start, end)


def test_step_window_accepts_resolved_and_empty_windows():
    assert StepWindow(1, 3).helper_steps == 4 and 0 not in StepWindow(1, 3)
    assert StepWindow(5, 2).empty and EMPTY_WINDOW.empty and EMPTY_WINDOW == StepWindow(1, 0)
