"""Property-based fuzzing of amdm_core (hypothesis).

Shapes (1-5 dims, batch 1-3), dtypes fp32/fp16/bf16, extreme sigmas (0 to 1e4), weights near 0 and
near 1, and member states that are independent, nearly parallel, identical, antiparallel, nearly
antiparallel or orthogonal. Invariants, with the tolerances stated per dtype (TOL: fp32 2e-5,
fp16 2e-3, bf16 1.6e-2 relative, i.e. a few units of the dtype's rounding):

  weights      spherical_weights: non-negative, sum of squares 1 (1e-12), ratios kept, zeros kept;
               nested_weights <-> omegas_from_weights round trip (1e-9); bad weights -> ValueError only.
  aggregate    no NaN/Inf, shape and dtype kept; spherical == sum_k w_k x_k (float64 reference on the same
               inputs); slerp norms between the members' norms x ||w||, exact interpolated norm and angle
               tau*theta for two members (angle only where theta < pi - 1e-2: antiparallel states have no
               unique great circle), identity for identical states, endpoint weights exact.
  deviation    no NaN/Inf; x_hat == mu unchanged; absolute moves exactly L toward mu; clamped lands
               between x_hat and mu, never past it; relative == x_hat + s (mu - x_hat).
  units        to_vp/from_vp round trip, ||to_vp(x)|| <= ||x||, for sigma 0..1e4 (fp16: 0..1e2).
  loop         amdm_sample with analytic Gaussian members: finite output in the input dtype, trace
               consistent (evaluations, aggregated steps inside the window, planned == taken steps,
               finite norm ratios) for every combination of K, window, operator, deviation and stepper.
  windows      window_from_steps / window_from_sigmas stay inside 1..n-1 and honour the noise range.

Budgets come from the hypothesis profile (tests/core/conftest.py): "ci" 60 examples per test (the
default), "full" 2000 (HYPOTHESIS_PROFILE=full). Every test records hypothesis events (dtype, mode,
relation...), shown with --hypothesis-show-statistics.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, event, given
from hypothesis import strategies as st

from amdm_core import (Deviation, DiscreteSchedule, EulerAncestralStepper, EulerStepper, amdm_sample, batch_norm,
                       deviation_step, from_vp, nested_weights, omegas_from_weights, seeded_noise, slerp2,
                       spherical_aggregate, spherical_weights, to_vp, vp_scale, window_from_sigmas,
                       window_from_steps)
from amdm_core.analytic import gaussian_denoiser
from amdm_core.compose import compose_predictions
from amdm_core.units import elements_per_sample

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
RELATIONS = ("independent", "nearly_parallel", "identical", "antiparallel", "nearly_antiparallel", "orthogonal",
             "scaled_parallel")

# -- strategies ---------------------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 3), st.lists(st.integers(1, 6), min_size=0, max_size=4)).map(
    lambda t: (t[0], *t[1]) if t[1] else (t[0], 2))
dtypes = st.sampled_from(list(DTYPES))
seeds = st.integers(0, 2 ** 31 - 1)
scales = st.sampled_from([1e-3, 0.05, 1.0, 14.6, 80.0, 1e3])
# weights near 0, near 1, ordinary and huge (spherical_weights rescales by the largest first)
raw_weight = st.one_of(st.just(0.0), st.floats(1e-300, 1e-6), st.floats(1e-6, 1.0), st.floats(1.0 - 1e-9, 1.0),
                       st.floats(1.0, 1e6), st.just(1e300))
omega = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1e-9), st.floats(1.0 - 1e-9, 1.0), st.floats(0.0, 1.0))


def states_for(relation, k, shape, seed, scale, dtype):
    """k member states [B, ...] in `dtype` with the given geometric relation to state 0."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g, dtype=torch.float64)
    out = [base]
    for i in range(1, k):
        noise = torch.randn(shape, generator=g, dtype=torch.float64)
        if relation == "independent":
            x = noise
        elif relation == "nearly_parallel":
            x = base + 1e-4 * noise
        elif relation == "identical":
            x = base.clone()
        elif relation == "antiparallel":
            x = -base if i % 2 else base.clone()
        elif relation == "nearly_antiparallel":
            x = -base + 1e-4 * noise
        elif relation == "scaled_parallel":
            x = base * (0.5 + i)
        else:       # orthogonal to state 0, equal norm (per sample; degenerate for one element)
            bf, nf = base.flatten(1), noise.flatten(1)
            nf = nf - (nf * bf).sum(1, keepdim=True) / (bf * bf).sum(1, keepdim=True).clamp_min(1e-300) * bf
            nf = nf / nf.norm(dim=1, keepdim=True).clamp_min(1e-300) * bf.norm(dim=1, keepdim=True)
            x = nf.view(shape)
        out.append(x)
    return [(x * scale).to(dtype) for x in out]


def per_sample_norm64(x):
    return x.double().flatten(1).norm(dim=1)


def angle64(a, b):
    """Per-sample angle in float64, robust near 0 and pi: 2 atan2(|u - v|, |u + v|)."""
    u = a.double().flatten(1)
    v = b.double().flatten(1)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return 2 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))


# -- weights ----------------------------------------------------------------------------------------------

@given(raw=st.lists(raw_weight, min_size=1, max_size=8))
def test_spherical_weights_are_unit_norm_and_keep_ratios(raw):
    assume(max(raw) > 0)
    event(f"members={len(raw)}")
    w = spherical_weights(raw)
    assert all(math.isfinite(v) and v >= 0 for v in w)
    assert math.isclose(sum(v * v for v in w), 1.0, rel_tol=0, abs_tol=1e-12)
    top = max(raw)
    for r, v in zip(raw, w):
        if r == 0:
            assert v == 0.0
        elif r / top > 1e-290:                            # representable ratio
            assert math.isclose(v / max(w), r / top, rel_tol=1e-12)


@given(bad=st.lists(st.one_of(st.just(float("nan")), st.just(float("inf")), st.floats(-1e9, -1e-300), st.just(0.0),
                              st.just("x"), st.none(), st.floats(0, 10)), min_size=0, max_size=6))
def test_bad_weights_raise_value_error_only(bad):
    ok = bool(bad) and all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in bad) and max(bad) > 0
    event("valid" if ok else "invalid")
    if ok:
        spherical_weights(bad)
        return
    with pytest.raises(ValueError):
        spherical_weights(bad)


@given(omegas=st.lists(omega, min_size=1, max_size=7))
def test_nested_weights_round_trip(omegas):
    w = nested_weights(omegas)
    assert len(w) == len(omegas) + 1 and all(v >= 0 for v in w)
    assert math.isclose(sum(v * v for v in w), 1.0, abs_tol=1e-12)
    back = omegas_from_weights(w)
    # weights -> omegas -> weights; sqrt(1 - omega^2) is ill-conditioned at omega ~ 1 (1e-16 -> 1.5e-8)
    assert all(abs(a - b) < 1e-7 for a, b in zip(nested_weights(back), w))
    prefix = [sum(v * v for v in w[:i + 2]) for i in range(len(omegas))]
    if all(p > 0 for p in prefix):        # omegas are unique unless a prefix of the weights is all zero
        assert all(abs(a - b) < 1e-9 for a, b in zip(back, omegas))


# -- aggregation ----------------------------------------------------------------------------------------

@given(k=st.integers(1, 5), shape=shapes, dtype=dtypes, relation=st.sampled_from(RELATIONS), seed=seeds,
       scale=scales, raw=st.lists(raw_weight, min_size=5, max_size=5), mode=st.sampled_from(["spherical", "slerp"]))
def test_spherical_aggregate_invariants(k, shape, dtype, relation, seed, scale, raw, mode):
    raw = raw[:k]
    assume(max(raw) > 0)
    dt = DTYPES[dtype]
    if dt is torch.float16:
        scale = min(scale, 80.0)          # sums of k states of |x| ~ 4 scale stay far from fp16's 65504
    event(f"dtype={dtype}")
    event(f"mode={mode}")
    event(f"relation={relation}")
    xs = states_for(relation, k, shape, seed, scale, dt)
    w = spherical_weights(raw)
    out = spherical_aggregate(xs, w, mode)
    assert out.shape == xs[0].shape and out.dtype == dt
    assert torch.isfinite(out).all()
    tol = TOL[dt]
    norms = torch.stack([per_sample_norm64(x) for x in xs])          # [k, B]
    got = per_sample_norm64(out)
    if mode == "spherical":
        ref = sum(wk * x.double() for wk, x in zip(w, xs))
        # rounding of the result to the dtype, fp32 accumulation, and fp16's subnormal spacing
        subnormal = math.sqrt(elements_per_sample(out)) * torch.finfo(dt).tiny * torch.finfo(dt).eps
        bound = (tol * per_sample_norm64(ref) + 8 * k * 1.2e-7 * (torch.tensor(w, dtype=torch.float64)[:, None]
                                                                  * norms).sum(0) + subnormal)
        assert ((out.double() - ref).flatten(1).norm(dim=1) <= bound).all()
        return
    # slerp: nested interpolation of norms, scaled by ||w|| (= 1 for spherical weights)
    lo, hi = norms.min(0).values, norms.max(0).values
    if k == 1 or all(v == 0 for v in w[1:]):
        assert torch.equal(out, xs[0]) or ((out.double() - xs[0].double()).flatten(1).norm(dim=1) <= tol * hi).all()
        return
    assert (got >= lo * (1 - tol) - 1e-30).all() and (got <= hi * (1 + tol) + 1e-30).all()
    if relation in ("identical",):
        assert ((out.double() - xs[0].double()).flatten(1).norm(dim=1) <= 4 * tol * hi + 1e-30).all()
    if k == 2:
        tau = (2 / math.pi) * math.acos(min(1.0, max(0.0, omegas_from_weights(w)[0])))
        expected_norm = (1 - tau) * norms[0] + tau * norms[1]
        assert ((got - expected_norm).abs() <= 4 * tol * hi + 1e-30).all()
        theta = angle64(xs[0], xs[1])
        ok = (theta < math.pi - 1e-2) & (norms[0] > 0) & (norms[1] > 0)     # angles of a zero state are undefined
        if dt is torch.float32 and ok.any():
            a_err = (angle64(xs[0], out) - tau * theta).abs()[ok]
            assert (a_err <= 2e-3 + 1e-3 * theta[ok]).all(), a_err


@given(shape=shapes, seed=seeds, scale=scales, tau=st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1),
                                                             st.floats(0, 1e-9), st.floats(1 - 1e-9, 1.0)),
       relation=st.sampled_from(RELATIONS))
def test_slerp2_geometry(shape, seed, scale, tau, relation):
    event(f"relation={relation}")
    a, b = states_for(relation, 2, shape, seed, scale, torch.float32)
    out = slerp2(a, b, tau)
    assert torch.isfinite(out).all()
    na, nb, no = per_sample_norm64(a), per_sample_norm64(b), per_sample_norm64(out)
    assert torch.allclose(no, (1 - tau) * na + tau * nb, rtol=2e-5, atol=0)
    theta = angle64(a, b)
    ok = (theta < math.pi - 1e-2) & (na > 0) & (nb > 0)        # angles of a zero state are undefined
    if ok.any():
        assert ((angle64(a, out) - tau * theta).abs()[ok] <= 2e-3 + 1e-3 * theta[ok]).all()
        assert ((angle64(out, b) - (1 - tau) * theta).abs()[ok] <= 2e-3 + 1e-3 * theta[ok]).all()


# -- deviation ----------------------------------------------------------------------------------------

@given(shape=shapes, dtype=dtypes, seed=seeds, scale=st.sampled_from([1e-2, 1.0, 14.6, 100.0]),
       relation=st.sampled_from(["independent", "identical", "nearly_parallel", "far"]),
       mode=st.sampled_from(["absolute", "clamped", "relative"]),
       scale_kind=st.sampled_from(["per_sqrt_n", "absolute", "per_sqrt_reference"]),
       step=st.one_of(st.just(0.0), st.floats(1e-9, 1e-3), st.floats(1e-3, 1.0), st.just(1.0), st.floats(1.0, 10.0)),
       per_sample=st.booleans())
def test_deviation_step_invariants(shape, dtype, seed, scale, relation, mode, scale_kind, step, per_sample):
    dt = DTYPES[dtype]
    if mode == "relative":
        step = min(step, 1.0)
    event(f"dtype={dtype}")
    event(f"mode={mode}")
    event(f"relation={relation}")
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale)
    if relation == "identical":
        mu = x.clone()
    elif relation == "nearly_parallel":
        mu = x + 1e-3 * scale * torch.randn(shape, generator=g, dtype=torch.float64)
    elif relation == "far":
        mu = x + 100 * scale * torch.randn(shape, generator=g, dtype=torch.float64)
    else:
        mu = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    x, mu = x.to(dt), mu.to(dt)
    steps = torch.full((shape[0],), float(step)) if not per_sample else \
        torch.rand(shape[0], generator=g) * float(step)
    out = deviation_step(x, mu, steps if per_sample else step, mode, scale_kind)
    assert out.shape == x.shape and out.dtype == dt and torch.isfinite(out).all()
    xd, md, od = x.double(), mu.double(), out.double()
    diff = (xd - md).flatten(1)
    d = diff.norm(dim=1)
    same = d == 0
    if same.any():
        assert torch.equal(out[same], x[same])
    if mode == "relative":
        L = steps.double() * d
    else:
        length_of_1 = {"per_sqrt_n": math.sqrt(elements_per_sample(x)), "absolute": 1.0, "per_sqrt_reference": 128.0}
        L = steps.double() * length_of_1[scale_kind]
        if mode == "clamped":
            L = torch.minimum(L, d)
    unit = diff / d.clamp_min(1e-300)[:, None]
    ref = xd.flatten(1) - L[:, None] * unit
    ref[same] = xd.flatten(1)[same]
    tol = TOL[dt]
    err = (od.flatten(1) - ref).norm(dim=1)
    bound = tol * (xd.flatten(1).norm(dim=1) + L + ref.norm(dim=1)) + 1e-6 * (L + d)
    assert (err <= bound).all(), (err, bound)
    if mode == "clamped" and dt is torch.float32:      # never past mu: stays on mu's near side
        past = ((od.flatten(1) - md.flatten(1)) * diff).sum(1)
        assert (past >= -1e-4 * d * (d + xd.flatten(1).norm(dim=1))).all()


# -- units ---------------------------------------------------------------------------------------------------

@given(shape=shapes, dtype=dtypes, seed=seeds,
       sigma=st.one_of(st.just(0.0), st.floats(0, 1e-3), st.floats(1e-3, 100.0), st.floats(100.0, 1e4)),
       as_tensor=st.booleans())
def test_vp_units_round_trip_at_extreme_sigmas(shape, dtype, seed, sigma, as_tensor):
    dt = DTYPES[dtype]
    if dt is torch.float16:
        sigma = min(sigma, 100.0)          # x / 1e4 leaves fp16's normal range
    event(f"dtype={dtype}")
    event("sigma>=100" if sigma >= 100 else "sigma<100")
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * (1.0 + sigma)).to(dt)
    s = torch.full((shape[0],), sigma) if as_tensor else sigma
    v = to_vp(x, s)
    back = from_vp(v, s)
    assert torch.isfinite(v).all() and torch.isfinite(back).all()
    assert float(vp_scale(sigma)) >= 1.0
    tol = TOL[dt]
    assert (per_sample_norm64(v) <= per_sample_norm64(x) * (1 + tol) + 1e-30).all()
    assert ((back.double() - x.double()).flatten(1).norm(dim=1) <= 4 * tol * per_sample_norm64(x) + 1e-30).all()


# -- the loop -------------------------------------------------------------------------------------------

@st.composite
def loop_cases(draw):
    k = draw(st.integers(2, 4))
    n = draw(st.integers(1, 8))
    dtype = draw(dtypes)
    smax = draw(st.sampled_from([1.0, 14.6, 80.0, 1e3] + ([1e4] if dtype != "fp16" else [])))
    smin = draw(st.sampled_from([1e-4, 0.03, 0.5]))
    end_zero = draw(st.booleans())
    raw = draw(st.lists(raw_weight, min_size=k, max_size=k))
    start = draw(st.integers(0, n + 1))
    end = draw(st.integers(-1, n + 1))
    mode = draw(st.sampled_from(["spherical", "slerp"]))
    dev = draw(st.one_of(st.none(), st.builds(
        lambda step, m, members, target: (step, m, members, target),
        st.one_of(st.just(0.0), st.floats(1e-6, 2.0)), st.sampled_from(["absolute", "clamped", "relative"]),
        st.sampled_from(["base", "all"]), st.sampled_from(["faithful", "reference"]))))
    stochastic = draw(st.booleans())
    step_noise = draw(st.sampled_from(["independent", "shared"]))
    normalize = draw(st.booleans())
    shape = draw(st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)))
    seed = draw(seeds)
    return dict(k=k, n=n, dtype=dtype, smax=smax, smin=smin, end_zero=end_zero, raw=raw, start=start, end=end,
                mode=mode, dev=dev, stochastic=stochastic, step_noise=step_noise, normalize=normalize, shape=shape,
                seed=seed)


SCHEDULE = DiscreteSchedule.scaled_linear()


def fp32_gaussian_denoiser(mean, std):
    """gaussian_denoiser evaluated in fp32 and returned in the state's dtype, as a host model's output
    is (amdm_core.analytic's own version computes sigma^2 in the state's dtype; see the test below)."""
    den = gaussian_denoiser(mean.float(), std)

    def denoise(x, sigma, **kw):
        return den(x.float(), torch.as_tensor(sigma, dtype=torch.float32), **kw).to(x.dtype)
    return denoise


@given(dtype=dtypes, sigma=st.one_of(st.floats(0, 14.6), st.floats(14.6, 1e4)), seed=seeds)
def test_analytic_gaussian_denoiser_is_finite_in_every_dtype(dtype, sigma, seed):
    """amdm_core.analytic.gaussian_denoiser (the README's demo members) at the sigmas the loop is
    fuzzed with: its prediction must be finite for fp16/bf16 states too."""
    dt = DTYPES[dtype]
    event(f"dtype={dtype}")
    g = torch.Generator().manual_seed(seed)
    den = gaussian_denoiser(torch.randn(1, 4, 2, 2, generator=g).to(dt), 0.5)
    x = (torch.randn(1, 4, 2, 2, generator=g) * min(sigma, 1e3 if dt is torch.float16 else sigma)).to(dt)
    assert torch.isfinite(den(x, torch.tensor([sigma]))).all()


@given(case=loop_cases())
def test_amdm_sample_is_finite_and_its_trace_consistent(case):
    k, n, dt = case["k"], case["n"], DTYPES[case["dtype"]]
    raw = case["raw"]
    assume(max(raw) > 0)
    if case["normalize"]:
        w = spherical_weights(raw)
    else:    # weights used as given, as the reference code's (sum of squares <= 1; larger sums inflate by design)
        raw = w = [0.9 * v for v in spherical_weights(raw)]
    event(f"dtype={case['dtype']}")
    event(f"mode={case['mode']}")
    event("deviation=" + ("none" if case["dev"] is None else case["dev"][1]))
    event("stepper=" + ("euler_ancestral" if case["stochastic"] else "euler"))
    g = torch.Generator().manual_seed(case["seed"])
    sig = torch.logspace(math.log10(case["smax"]), math.log10(case["smin"]), n + (0 if case["end_zero"] else 1),
                         dtype=torch.float64).float()
    if case["end_zero"]:
        sig = torch.cat([sig, sig.new_zeros(1)])
    shape = case["shape"]
    dens = [fp32_gaussian_denoiser(torch.randn(shape, generator=g).to(dt), float(0.1 + torch.rand(1, generator=g)))
            for _ in range(k)]
    init = [(torch.randn(shape, generator=g) * sig[0]).to(dt) for _ in range(k)]
    window = window_from_steps(case["start"], case["end"], n)
    deviation, schedule = None, None
    if case["dev"] is not None:
        step, m, members, target = case["dev"]
        if m == "relative":
            step = min(step, 1.0)
        deviation = Deviation(step=step, mode=m, target=target, members=members)
        schedule = SCHEDULE if target == "reference" else None
    stepper = EulerAncestralStepper(seeded_noise(case["seed"])) if case["stochastic"] else EulerStepper()
    out, tr = amdm_sample(dens, sig, init, weights=raw, window=window, stepper=stepper, mode=case["mode"],
                          deviation=deviation, step_noise=case["step_noise"], schedule=schedule,
                          normalize_weights=case["normalize"])
    assert out.shape == init[0].shape and out.dtype == dt
    assert torch.isfinite(out).all()
    helpers = [j for j in range(1, k) if w[j] > 0]      # a weight that normalises to 0 switches a helper off
    if window.empty or not helpers or n < 2:
        assert tr.aggregated_steps == [] and tr.evaluations[1:] == [0] * (k - 1)
    else:
        assert tr.aggregated_steps == list(range(window.start, window.end + 1))
        assert all(tr.evaluations[j] == window.end + 1 for j in helpers)
    assert tr.evaluations[0] == n and all(tr.evaluations[j] == 0 for j in range(1, k) if w[j] <= 0)
    assert tr.planned_member_steps == sum(tr.member_steps) == tr.total_evaluations
    assert all(math.isfinite(r) and r >= 0 for r in tr.norm_ratio)
    assert len(tr.aggregated_sigmas) == len(tr.aggregated_steps)


@given(k=st.integers(2, 3), n=st.integers(2, 8), data=st.data(), target=st.sampled_from(["faithful", "reference"]),
       members=st.sampled_from(["base", "all"]), seed=seeds)
def test_amdm_sample_with_member_ranges_runs_every_target(k, n, data, target, members, seed):
    """Helpers active on a contiguous part of the schedule (noise ranges), joining after step 0 or
    leaving early, for both mu targets: finite, aggregated exactly where two or more members run."""
    spans = [data.draw(st.tuples(st.integers(0, n), st.integers(0, n)).map(sorted)) for _ in range(k - 1)]
    active = [[True] * n] + [[a <= j < b for j in range(n)] for a, b in spans]
    window = window_from_steps(data.draw(st.integers(0, n)), data.draw(st.integers(-1, n)), n)
    event(f"target={target}")
    event("late joiner=" + str(any(a > 0 and a < b for a, b in spans)))
    g = torch.Generator().manual_seed(seed)
    shape = (1, 2, 3, 3)
    sig = SCHEDULE.ddim_uniform_sigmas(n)[: n + 1].clone()
    sig[-1] = 0.0
    dens = [gaussian_denoiser(torch.randn(shape, generator=g), 0.5) for _ in range(k)]
    init = [torch.randn(shape, generator=g) * sig[0] for _ in range(k)]
    out, tr = amdm_sample(dens, sig, init, weights=[1.0] * k, window=window, stepper=EulerStepper(),
                          deviation=Deviation(step=0.3, target=target, members=members), schedule=SCHEDULE,
                          active=active)
    assert torch.isfinite(out).all()
    win = [] if window.empty else list(range(window.start, window.end + 1))
    runs = [[j for j in range(window.end + 1 if win else 0) if row[j]] for row in active[1:]]
    assert tr.aggregated_steps == [j for j in win if any(j in r for r in runs)]
    assert tr.evaluations == [n] + ([len(r) for r in runs] if any(runs) else [0] * (k - 1))


# -- windows and composition --------------------------------------------------------------------------

@given(start=st.integers(-5, 60), end=st.integers(-5, 60), n=st.integers(1, 50))
def test_step_windows_stay_inside_the_schedule(start, end, n):
    w = window_from_steps(start, end, n)
    if not w.empty:
        assert 1 <= w.start <= w.end <= n - 1
        assert w.start == max(1, start) and w.end == min(end, n - 1)
    else:
        assert max(1, start) > min(end, n - 1)


@given(sig=st.lists(st.floats(1e-4, 1e3), min_size=2, max_size=30, unique=True),
       hi=st.floats(0, 2e3), lo=st.floats(0, 2e3))
def test_sigma_windows_follow_the_noise_range(sig, hi, lo):
    sigmas = sorted(sig, reverse=True) + [0.0]
    if hi < lo:
        with pytest.raises(ValueError):
            window_from_sigmas(hi, lo, sigmas)
        return
    w = window_from_sigmas(hi, lo, sigmas)
    inside = [j for j in range(1, len(sigmas) - 1) if lo <= sigmas[j] <= hi]
    assert (w.empty and not inside) or (not w.empty and [w.start, w.end] == [inside[0], inside[-1]])


@given(k=st.integers(1, 4), shape=shapes, dtype=dtypes, seed=seeds,
       raw=st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 10.0)), min_size=4, max_size=4),
       mode=st.sampled_from(["average", "composable"]))
def test_compose_predictions_finite_and_average_of_equals_is_identity(k, shape, dtype, seed, raw, mode):
    dt = DTYPES[dtype]
    w = raw[:k]
    assume(mode == "composable" or sum(w) > 0)
    event(f"mode={mode}")
    g = torch.Generator().manual_seed(seed)
    d = (torch.randn(shape, generator=g) * 14.6).to(dt)
    u = (torch.randn(shape, generator=g) * 14.6).to(dt)
    outs = [d.clone() for _ in range(k)]
    res = compose_predictions(outs, [u.clone() for _ in range(k)] if mode == "composable" else None, w, mode)
    assert res.shape == d.shape and torch.isfinite(res).all()
    tol = TOL[dt]
    if mode == "average":
        assert ((res.double() - d.double()).flatten(1).norm(dim=1) <= 4 * tol * per_sample_norm64(d) + 1e-30).all()
    else:    # mean(u) + sum_k w_k (d - u)
        ref = u.double() + sum(w) * (d.double() - u.double())
        err = (res.double() - ref).flatten(1).norm(dim=1)
        assert (err <= 4 * tol * (per_sample_norm64(u) + (sum(w) + k) * per_sample_norm64(d - u)) + 1e-30).all()


def test_batch_norm_is_per_sample_in_fp32():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float16)
    n = batch_norm(x)
    assert n.dtype == torch.float32 and n.flatten().tolist() == [5.0, 0.0]
