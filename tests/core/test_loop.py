import dataclasses
import math

import pytest
import torch

from amdm_core import (FAITHFUL, REFERENCE_COMPATIBLE, Deviation, DiscreteSchedule, EulerAncestralStepper,
                       EulerStepper, StepWindow, amdm_sample, batch_norm, code_exact_mu, deviation_step,
                       nested_weights, reference_three_member_weights, seeded_noise, spherical_aggregate,
                       step_from_reference, window_from_steps)

from amdm_core.analytic import gaussian_denoiser

SD = DiscreteSchedule.scaled_linear()
SHAPE = (2, 4, 16, 16)



def members(gen, k, std=0.6):
    return [gaussian_denoiser(torch.randn(SHAPE, generator=gen), std) for _ in range(k)]


def noises(gen, k):
    return [torch.randn(SHAPE, generator=gen) for _ in range(k)]


def plain(den, sigmas, noise, stepper=None):
    return (stepper or EulerStepper()).run(den, noise * sigmas[0], sigmas, 0, 0)


@pytest.mark.parametrize("k, n, start, end", [(2, 20, 1, 3), (3, 10, 1, 3), (2, 50, 1, 7), (4, 12, 3, 6), (2, 8, 0, 7)])
def test_window_semantics_and_evaluation_counts(gen, k, n, start, end):
    sig = SD.ddim_uniform_sigmas(n)
    n = len(sig) - 1                     # the host's ddim_uniform grid: 12 asked -> 13 steps
    dens = members(gen, k)
    w = window_from_steps(start, end, n)
    out, tr = amdm_sample(dens, sig, [z * sig[0] for z in noises(gen, k)], weights=[1.0] * k, window=w,
                          stepper=EulerStepper(), deviation=FAITHFUL.deviation)
    assert tr.aggregated_steps == list(range(max(1, start), end + 1))
    assert 0 not in tr.aggregated_steps
    assert tr.evaluations == [n] + [end + 1] * (k - 1)       # helpers stop after the window
    assert tr.total_evaluations == n + (k - 1) * (end + 1)
    assert tr.planned_member_steps == tr.total_evaluations == sum(tr.member_steps)
    assert tr.aggregated_sigmas == [pytest.approx(float(sig[j + 1])) for j in tr.aggregated_steps]
    assert torch.isfinite(out).all()


def test_progress_is_monotonic_and_complete(gen):
    sig = SD.ddim_uniform_sigmas(10)
    seen = []
    amdm_sample(members(gen, 3), sig, [z * sig[0] for z in noises(gen, 3)], weights=[1, 1, 1],
                window=window_from_steps(1, 2, 10), stepper=EulerStepper(),
                on_progress=lambda k, j, d, x, done, total: seen.append((done, total, k, j)))
    assert [d for d, *_ in seen] == list(range(1, 10 + 2 * 3 + 1))
    assert all(t == 16 for _, t, *_ in seen)
    assert [(k, j) for *_, k, j in seen[-7:]] == [(0, j) for j in range(3, 10)]


@pytest.mark.parametrize("case", ["single", "empty_window", "helper_weight_zero"])
def test_reductions_to_the_plain_sampler_are_bitwise(gen, case):
    sig = SD.ddim_uniform_sigmas(12)
    n = len(sig) - 1
    dens, zs = members(gen, 2), noises(gen, 2)
    expected = plain(dens[0], sig, zs[0])
    kw = dict(stepper=EulerStepper(), deviation=Deviation(step=0.0))
    if case == "single":
        out, tr = amdm_sample(dens[:1], sig, [zs[0] * sig[0]], weights=[1.0], window=window_from_steps(1, 5, n), **kw)
    elif case == "empty_window":
        out, tr = amdm_sample(dens, sig, [z * sig[0] for z in zs], weights=[1, 1], window=window_from_steps(3, 2, n), **kw)
    else:
        out, tr = amdm_sample(dens, sig, [z * sig[0] for z in zs], weights=nested_weights([1.0]),
                              window=window_from_steps(1, 5, n), **kw)
    assert torch.equal(out, expected)
    assert tr.evaluations[0] == n and sum(tr.evaluations[1:]) == 0 and tr.aggregated_steps == []


def test_identical_members_slerp_no_deviation_equal_single_model(gen):
    sig = SD.ddim_uniform_sigmas(15)
    den = members(gen, 1)[0]
    z = noises(gen, 1)[0]
    out, tr = amdm_sample([den, den, den], sig, [z * sig[0]] * 3, weights=[0.3, 0.5, 0.8], window=window_from_steps(1, 8, 15),
                          stepper=EulerStepper(), mode="slerp")
    assert tr.aggregated_steps == list(range(1, 9))
    assert torch.allclose(out, plain(den, sig, z), rtol=1e-5, atol=1e-5)
    # the raw paper formula on the same identical states inflates them instead
    bad, tr2 = amdm_sample([den, den], sig, [z * sig[0]] * 2, weights=nested_weights([0.5]),
                           window=window_from_steps(1, 1, 15), stepper=EulerStepper())
    assert tr2.norm_ratio[0] == pytest.approx(0.5 + math.sqrt(0.75), rel=1e-5)


def test_stochastic_shared_noise_identical_members_reproduce_euler_ancestral(gen):
    """Option A: aggregate the pre-noise means, then add one shared draw per step."""
    sig = SD.ddim_uniform_sigmas(12)
    den = members(gen, 1)[0]
    z = noises(gen, 1)[0]
    st = EulerAncestralStepper(seeded_noise(7))
    out, _ = amdm_sample([den, den], sig, [z * sig[0]] * 2, weights=[1, 1], window=window_from_steps(1, 6, 12),
                         stepper=st, mode="slerp", step_noise="shared")
    ref = st.run(den, z * sig[0], sig, 0, 0)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_shared_noise_added_after_spherical_aggregation_would_inflate_it(gen):
    """Why shared noise must be added after aggregating (Option A), never aggregated (Option B)."""
    x = torch.zeros(SHAPE)
    z = torch.randn(SHAPE, generator=gen)
    w = nested_weights([0.5])
    shared = spherical_aggregate([x + z, x + z], w)                       # Option B, shared draw
    independent = spherical_aggregate([x + z, x + torch.randn(SHAPE, generator=gen)], w)
    assert float((batch_norm(shared) / batch_norm(z)).mean()) == pytest.approx(1.3660254, rel=1e-6)
    assert float((batch_norm(independent) / batch_norm(z)).mean()) == pytest.approx(1.0, abs=0.03)


def test_independent_step_noise_keeps_noise_variance(gen):
    sig = SD.ddim_uniform_sigmas(10)
    dens = members(gen, 2)
    zs = noises(gen, 2)
    st = EulerAncestralStepper(seeded_noise(11))
    out, tr = amdm_sample(dens, sig, [z * sig[0] for z in zs], weights=nested_weights([0.5]),
                          window=window_from_steps(1, 1, 10), stepper=st)
    assert tr.norm_ratio[0] == pytest.approx(1.0, abs=0.05)


def test_shared_noise_spherical_rejected_for_black_box_stochastic_steppers(gen):
    class BlackBox(EulerAncestralStepper):
        separates_noise = False
    sig = SD.ddim_uniform_sigmas(5)
    with pytest.raises(ValueError, match="inflating it"):
        amdm_sample(members(gen, 2), sig, [z * sig[0] for z in noises(gen, 2)], weights=[1, 1],
                    window=window_from_steps(1, 2, 5), stepper=BlackBox(seeded_noise(0)), step_noise="shared")


def test_faithful_deviation_moves_base_a_fixed_distance_toward_its_own_mean(gen):
    """Replay one aggregated step by hand: x0_new = dev(agg(vp states), own vp state) * c."""
    sig = SD.ddim_uniform_sigmas(6)
    dens, zs = members(gen, 2), noises(gen, 2)
    x0 = [z * sig[0] for z in zs]
    st = EulerStepper()
    step = 0.2
    out, tr = amdm_sample(dens, sig, x0, weights=nested_weights([0.5]), window=window_from_steps(1, 1, 6),
                          stepper=st, deviation=Deviation(step=step))
    # by hand
    x1 = [st.step(d, x, sig[0], sig[1], 0, 0).state for d, x in zip(dens, x0)]
    x2 = [st.step(d, x, sig[1], sig[2], 1, 0).state for d, x in zip(dens, x1)]
    c = math.sqrt(1 + float(sig[2]) ** 2)
    agg = 0.5 * x2[0] / c + math.sqrt(0.75) * x2[1] / c
    diff = agg - x2[0] / c
    n = diff[0].numel()
    moved = agg - step * math.sqrt(n) * diff / batch_norm(diff)
    expected = st.run(dens[0], moved * c, sig[2:], 2, 0)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-5)


def reference_eps(d):
    """A denoiser as the reference code's eps model: VP state at training index t -> eps."""
    def f(x_vp, t):
        s = float(SD.sigmas[t])
        xk = x_vp * math.sqrt(1 + s * s)
        return (xk - d(xk, torch.tensor([s], dtype=torch.float64))) / s
    return f


@pytest.mark.parametrize("k, n, end", [(2, 20, 3), (2, 10, 3), (3, 10, 3)])
def test_reference_preset_reproduces_reference_code_arithmetic(gen, reference_code, k, n, end):
    shape = (1, 4, 16, 16)
    means = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(k)]
    dens = [gaussian_denoiser(m, 0.5) for m in means]
    sig = SD.ddim_uniform_sigmas(n).double()
    timesteps = [SD.timestep(float(s)) for s in sig[:-1]]

    zs = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(k)]
    weights = nested_weights([0.5]) if k == 2 else reference_three_member_weights(0.47, 0.5)
    ps = [55.0, 45.0, 35.0][:k]
    n_el = shape[1] * shape[2] * shape[3]
    s0 = float(sig[0])
    ref = reference_code.reference_code_ddim([reference_eps(d) for d in dens], [z * s0 / math.sqrt(1 + s0 * s0) for z in zs],
                              timesteps, SD.alphas_cumprod, weights, ps, 1, end)
    preset = REFERENCE_COMPATIBLE
    dev = Deviation(step=[p / math.sqrt(n_el) for p in ps], mode=preset.deviation.mode,
                    target=preset.deviation.target, members=preset.deviation.members)
    out, tr = amdm_sample(dens, sig, [z * s0 for z in zs], weights=weights, window=window_from_steps(1, end, n),
                          stepper=EulerStepper(), mode=preset.mode, deviation=dev, schedule=SD,
                          normalize_weights=preset.normalize_weights)
    assert tr.aggregated_steps == list(range(1, end + 1))
    assert float((out - ref).norm() / ref.norm()) < 1e-6


def test_reference_target_needs_a_schedule(gen):
    sig = SD.ddim_uniform_sigmas(5)
    with pytest.raises(ValueError, match="discrete schedule"):
        amdm_sample(members(gen, 2), sig, [z * sig[0] for z in noises(gen, 2)], weights=[1, 1],
                    window=window_from_steps(1, 2, 5), stepper=EulerStepper(), deviation=REFERENCE_COMPATIBLE.deviation)


def test_batch_samples_are_independent_through_the_loop(gen):
    sig = SD.ddim_uniform_sigmas(8)
    dens, zs = members(gen, 2), noises(gen, 2)
    x0 = [z * sig[0] for z in zs]
    kw = dict(weights=[1, 1], window=window_from_steps(1, 3, 8), stepper=EulerStepper(), deviation=FAITHFUL.deviation)
    out, _ = amdm_sample(dens, sig, x0, **kw)
    x0b = [x.clone() for x in x0]
    x0b[1][1] *= 1.7
    outb, _ = amdm_sample(dens, sig, x0b, **kw)
    assert torch.equal(out[0], outb[0]) and not torch.allclose(out[1], outb[1])


def test_faithful_amdm_pulls_base_toward_helper_aspect(gen):
    """With Gaussian members of different means the aggregate lands between them (base-weighted)."""
    shape = (1, 4, 16, 16)
    m_base, m_help = torch.full(shape, -1.0), torch.full(shape, 1.0)
    dens = [gaussian_denoiser(m_base, 0.3), gaussian_denoiser(m_help, 0.3)]
    sig = SD.ddim_uniform_sigmas(20)
    zs = [torch.randn(shape, generator=gen) for _ in range(2)]
    alone = plain(dens[0], sig, zs[0])
    out, _ = amdm_sample(dens, sig, [z * sig[0] for z in zs], weights=nested_weights([0.5]),
                         window=window_from_steps(1, 10, 20), stepper=EulerStepper(), deviation=FAITHFUL.deviation)
    assert float(alone.mean()) < -0.9
    assert float(out.mean()) > float(alone.mean()) + 0.05


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_states_stay_finite(gen, dtype):
    sig = SD.ddim_uniform_sigmas(10)
    dens = members(gen, 2)
    x0 = [(z * sig[0]).to(dtype) for z in noises(gen, 2)]
    wrap = [lambda x, s, d=d: d(x.float(), s.float()).to(x.dtype) for d in dens]
    out, _ = amdm_sample(wrap, sig, x0, weights=[1, 1], window=window_from_steps(1, 4, 10), stepper=EulerStepper(),
                         deviation=FAITHFUL.deviation)
    assert out.dtype == dtype and torch.isfinite(out).all()


def test_bad_arguments(gen):
    sig = SD.ddim_uniform_sigmas(5)
    d = members(gen, 2)
    x = [z * sig[0] for z in noises(gen, 2)]
    w = window_from_steps(1, 2, 5)
    with pytest.raises(ValueError, match="one initial state and one weight per denoiser"):
        amdm_sample(d, sig, x[:1], weights=[1, 1], window=w, stepper=EulerStepper())
    with pytest.raises(ValueError, match="aggregation mode 'avg' is unknown"):
        amdm_sample(d, sig, x, weights=[1, 1], window=w, stepper=EulerStepper(), mode="avg")
    with pytest.raises(ValueError, match="'target' = 'paper' is not one of"):
        Deviation(target="paper")
    with pytest.raises(ValueError, match="'step' = -1.0 must be"):
        Deviation(step=-1.0)
    assert step_from_reference(45) == FAITHFUL.deviation.step


def test_reference_target_with_a_helper_joining_late_uses_its_own_first_eps(gen):
    """A helper whose noise range starts at step 2 has no previous step for the code's lagged mu:
    its mu pairs the state it joins with (the base's) with its OWN eps of that first step, under the
    same one-step coefficients as the other members. Replayed by hand through the helper's input
    at step 3 (the optimised state it carries out of step 2)."""
    sig = SD.ddim_uniform_sigmas(10).double()
    n = len(sig) - 1
    dens = [gaussian_denoiser(torch.randn(SHAPE, generator=gen, dtype=torch.float64), 0.6) for _ in range(2)]
    seen = []

    def helper(x, s):
        seen.append(x.clone())
        return dens[1](x, s)

    zs = [torch.randn(SHAPE, generator=gen, dtype=torch.float64) * sig[0] for _ in range(2)]
    active = [[True] * n, [j >= 2 for j in range(n)]]
    dev = Deviation(step=[0.3, 0.2], target="reference", members="all")
    out, tr = amdm_sample([dens[0], helper], sig, zs, weights=[0.6, 0.8], window=window_from_steps(2, 3, n),
                          stepper=EulerStepper(), deviation=dev, schedule=SD, active=active)
    assert tr.aggregated_steps == [2, 3] and tr.evaluations == [n, 2] and torch.isfinite(out).all()
    st = EulerStepper()
    x_in = st.run(dens[0], zs[0], sig[:3], 0, 0)                 # the base state entering step 2
    assert torch.equal(seen[0], x_in)                           # the helper joins from it
    s1, s2, s3 = (float(sig[i]) for i in (1, 2, 3))
    base_next = st.step(dens[0], x_in, s2, s3, 2, 0).state
    help_next = st.step(dens[1], x_in, s2, s3, 2, 1).state
    c = math.sqrt(1 + s3 ** 2)
    agg = (0.6 * base_next + 0.8 * help_next) / c
    t = SD.timestep(s1)                                          # the previous step's training step
    eps_own = (x_in - dens[1](x_in, torch.tensor([s2], dtype=torch.float64))) / s2
    mu = code_exact_mu(x_in / math.sqrt(1 + s2 ** 2), eps_own, SD.alpha(t), SD.alpha_bar(t))
    expected = deviation_step(agg, mu, 0.2) * c
    assert float((seen[1] - expected).norm() / expected.norm()) < 1e-6


def test_a_window_past_the_schedule_is_refused_by_name(gen):
    sig = SD.ddim_uniform_sigmas(10)
    with pytest.raises(ValueError, match=r"window end 15 .* 10-step"):
        amdm_sample(members(gen, 2), sig, [z * sig[0] for z in noises(gen, 2)], weights=[1, 1],
                    window=StepWindow(1, 15), stepper=EulerStepper())


@pytest.mark.parametrize("side", [64, 128])
def test_reference_preset_reproduces_p_45_at_every_resolution(gen, reference_code, side):
    """The preset's 'per_sqrt_reference' unit: step p/128 is the reference code's absolute p = 45 at
    64x64 (512x512 images) AND at 128x128 latents, where the per-sqrt(n) unit would double it."""
    shape = (1, 4, side, side)
    dens = [gaussian_denoiser(torch.randn(shape, generator=gen, dtype=torch.float64), 0.5) for _ in range(2)]
    sig = SD.ddim_uniform_sigmas(10).double()
    n = len(sig) - 1
    timesteps = [SD.timestep(float(s)) for s in sig[:-1]]

    zs = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2)]
    weights = nested_weights([0.5])
    s0 = float(sig[0])
    ref = reference_code.reference_code_ddim([reference_eps(d) for d in dens], [z * s0 / math.sqrt(1 + s0 * s0) for z in zs],
                                             timesteps, SD.alphas_cumprod, weights, [45.0, 45.0], 1, 3)
    preset = REFERENCE_COMPATIBLE
    dev = preset.deviation
    assert dev.step == step_from_reference(45)
    kw = dict(weights=weights, window=window_from_steps(1, 3, n), stepper=EulerStepper(), schedule=SD,
              mode=preset.mode, normalize_weights=preset.normalize_weights)
    out, _ = amdm_sample(dens, sig, [z * s0 for z in zs], deviation=dev, **kw)
    assert float((out - ref).norm() / ref.norm()) < 1e-6
    per_n, _ = amdm_sample(dens, sig, [z * s0 for z in zs], deviation=dataclasses.replace(dev, scale="per_sqrt_n"),
                           **kw)
    assert (float((per_n - ref).norm() / ref.norm()) < 1e-6) == (side == 64)
