"""Compose Predictions and member noise ranges in the real host (issue: beyond AMDM)."""
import json

import pytest
import torch


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def ksampler_advanced_chain(comfy, stages, latent, *, seed, steps, cfg_by_stage, sampler_name, scheduler):
    """The stock handoff: KSamplerAdvanced per stage, noise added once, leftover noise returned."""
    out = latent
    for i, (model, pos, neg, start, end) in enumerate(stages):
        last = i == len(stages) - 1
        out = comfy.nodes.KSamplerAdvanced().sample(
            model, "enable" if i == 0 else "disable", seed, steps, cfg_by_stage[i], sampler_name, scheduler, pos, neg,
            out, start, end if not last else 10000, "disable" if last else "enable")[0]
    return out


@pytest.mark.parametrize("sampler_name", ["euler", "euler_ancestral"])
@pytest.mark.parametrize("order", ["base_first", "helper_first"])
def test_two_stage_handoff_equals_the_ksampleradvanced_chain(amdm, comfy, model_a, model_b, make_cond, empty_latent,
                                                              sampler_name, order):
    steps, m, seed = 8, 3, 13
    pos_a, pos_b, neg = make_cond(1), make_cond(2), make_cond(0.0)
    sigmas = comfy.samplers.calculate_sigmas(model_a.get_model_object("model_sampling"), "normal", steps)
    cut = float(sigmas[m])                      # steps 0..m-1 start above the cut, m.. at or below it
    early, late = (1e4, cut, "sigma"), (cut, 0.0, "sigma")
    base_rng, helper_rng = (early, late) if order == "base_first" else (late, early)
    chain = amdm.chain(model_b, pos_b, neg, cfg=3.0, weight=1.0, range_start=helper_rng[0], range_end=helper_rng[1],
                       range_unit="sigma")
    got, text, ui = amdm.sample(model_a, pos_a, neg, chain, empty_latent(), seed=seed, steps=steps, cfg=2.0,
                                sampler_name=sampler_name, aggregation=amdm.compose(), base_range=base_rng)
    stages = [(model_a, pos_a, neg), (model_b, pos_b, neg)]
    cfgs = [2.0, 3.0]
    if order == "helper_first":
        stages, cfgs = stages[::-1], cfgs[::-1]
    with torch.inference_mode():
        expected = ksampler_advanced_chain(comfy, [stages[0] + (0, m), stages[1] + (m, steps)], empty_latent(),
                                           seed=seed, steps=steps, cfg_by_stage=cfgs, sampler_name=sampler_name,
                                           scheduler="normal")
    if sampler_name == "euler":
        # one pass vs two KSamplers: equal up to the chain's process_latent_out/in round trip
        assert rel_err(got["samples"], expected["samples"]) < 1e-5
    else:
        # ancestral: the chain's second KSampler restarts the noise stream; one pass does not
        assert got["samples"].shape == expected["samples"].shape
    s = json.loads(ui["amdm_summary"][0])
    evals = [mm["evaluations"] for mm in s["members"]]
    assert sorted(evals) == sorted([m, steps - m]) and sum(evals) == steps
    assert "handoff" in text


def test_three_stage_handoff_any_order(amdm, comfy, load_unet, make_cond, empty_latent):
    steps, seed = 9, 4
    models = [load_unet(v) for v in "abc"]
    conds = [make_cond(i + 1) for i in range(3)]
    neg = make_cond(0.0)
    sig = comfy.samplers.calculate_sigmas(models[0].get_model_object("model_sampling"), "karras", steps)
    c1, c2 = float(sig[3]), float(sig[6])
    spans = [(1e4, c1), (c1, c2), (c2, 0.0)]
    order = [2, 0, 1]                              # stage 1 = model c, 2 = model a (the base), 3 = model b
    rng = {order[i]: spans[i] for i in range(3)}
    chain = amdm.chain(models[1], conds[1], neg, cfg=2.0, weight=1.0, range_start=rng[1][0], range_end=rng[1][1],
                       range_unit="sigma")
    chain = amdm.chain(models[2], conds[2], neg, cfg=2.0, weight=1.0, previous=chain, range_start=rng[2][0],
                       range_end=rng[2][1], range_unit="sigma")
    got, *_ = amdm.sample(models[0], conds[0], neg, chain, empty_latent(), seed=seed, steps=steps, cfg=2.0,
                          scheduler="karras", aggregation=amdm.compose(), base_range=rng[0] + ("sigma",))
    with torch.inference_mode():
        expected = ksampler_advanced_chain(
            comfy, [(models[order[0]], conds[order[0]], neg, 0, 3), (models[order[1]], conds[order[1]], neg, 3, 6),
                    (models[order[2]], conds[order[2]], neg, 6, steps)], empty_latent(), seed=seed, steps=steps,
            cfg_by_stage=[2.0] * 3, sampler_name="euler", scheduler="karras")
    assert rel_err(got["samples"], expected["samples"]) < 1e-5


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m", "dpmpp_sde", "uni_pc", "euler_ancestral"])
def test_one_pass_handoff_between_identical_members_is_the_stock_ksampler(amdm, model_a, make_cond, empty_latent,
                                                                          stock_ksampler, sampler_name):
    """One member active at each evaluation: each call is that member's own prediction, and the
    sampler's history and noise stream run through the handoff, so with identical members the
    result is the stock KSampler's, bit for bit, for every sampler."""
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_a, pos, neg, cfg=2.0, weight=1.0, range_start=0.5, range_end=1.0)
    got, text, _ = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=3, steps=6, cfg=2.0,
                               sampler_name=sampler_name, aggregation=amdm.compose(), base_range=(0.0, 0.5, "percent"))
    expected = stock_ksampler(model_a, pos, neg, empty_latent(), seed=3, steps=6, cfg=2.0, sampler_name=sampler_name)
    assert torch.equal(got["samples"], expected["samples"])
    assert "handoff" in text


@pytest.mark.parametrize("mode", ["composable", "average"])
def test_composition_formula_at_one_state(amdm, comfy, model_a, model_b, make_cond, empty_latent, mode):
    """A one-step euler run returns the composed x0 prediction at the initial state: compare it to the
    formula applied to each member's stock prediction (sampling_function / calc_cond_batch)."""
    pos_a, pos_b, neg = make_cond(1), make_cond(2), make_cond(0.0)
    chain = amdm.chain(model_b, pos_b, neg, cfg=3.0, weight=0.7)
    got, text, _ = amdm.sample(model_a, pos_a, neg, chain, empty_latent(), seed=5, steps=1, cfg=2.0,
                               base_weight=1.2, aggregation=amdm.compose(mode=mode))
    ms = model_a.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "normal", 1)
    noise = comfy.sample.prepare_noise(empty_latent()["samples"], 5)
    with torch.inference_mode():
        x = ms.noise_scaling(sigmas[0], noise, torch.zeros_like(noise), True)
        preds = []
        for model, pos, cfg in ((model_a, pos_a, 2.0), (model_b, pos_b, 3.0)):
            comfy.model_management.load_models_gpu([model])
            model.pre_run()
            conds = {"positive": comfy.sampler_helpers.convert_cond(pos),
                     "negative": comfy.sampler_helpers.convert_cond(neg)}
            conds = comfy.samplers.process_conds(model.model, noise, conds, "cpu", None, None, 5)
            s = sigmas[0].expand(1)
            c, u = comfy.samplers.calc_cond_batch(model.model, [conds["positive"], conds["negative"]], x, s, {})
            preds.append((u + (c - u) * cfg, u))
            model.cleanup()
    (d1, u1), (d2, u2) = preds
    if mode == "average":
        expected = (d1 * 1.2 + d2 * 0.7) / 1.9
    else:
        expected = (u1 + u2) / 2 + (d1 - u1) * 1.2 + (d2 - u2) * 0.7
    out = model_a.model.process_latent_in(got["samples"])
    assert torch.allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert "composed steps 0-0 of 1" in text


def test_composition_window_and_member_ranges_limit_evaluations(amdm, model_a, model_b, make_cond, empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    helper, calls = amdm.count_calls(model_b)
    chain = amdm.chain(helper, make_cond(2), neg, weight=1.0, range_start=0.0, range_end=0.6)
    steps = 10
    _, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=steps,
                              aggregation=amdm.compose(window_unit="steps", window_start=2, window_end=5))
    s = json.loads(ui["amdm_summary"][0])
    assert s["window_steps"] == [2, 5]
    assert len(calls) == 4 and s["members"][1]["evaluations"] == 4 and s["members"][0]["evaluations"] == steps
    assert "composed steps 2-5 of 10" in text


def test_cfg_pp_refused_when_helpers_compose_and_gaps_refused(amdm, model_a, model_b, make_cond, empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    with pytest.raises(ValueError, match="CFG\\+\\+"):
        amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=4, sampler_name="euler_cfg_pp",
                    aggregation=amdm.compose())
    gap = amdm.chain(model_b, make_cond(2), neg, weight=1.0, range_start=0.7, range_end=1.0)
    with pytest.raises(ValueError, match="no member is active at step"):
        amdm.sample(model_a, pos, neg, gap, empty_latent(), steps=8, aggregation=amdm.compose(),
                    base_range=(0.0, 0.3, "percent"))
    with pytest.raises(ValueError, match="base member has a noise range"):
        amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=4, base_range=(0.0, 0.5, "percent"))
    with pytest.raises(ValueError, match="range_start"):
        amdm.chain(model_b, make_cond(2), neg, weight=1.0, range_start=0.8, range_end=0.2)


def test_amdm_helper_range_limits_its_evaluations(amdm, model_a, model_b, make_cond, empty_latent):
    """With Spherical Aggregate, a helper active only from 10 % of the noise range joins the base's
    trajectory there and is evaluated only while active and inside the window."""
    pos, neg = make_cond(1), make_cond(0.0)
    helper, calls = amdm.count_calls(model_b)
    steps = 12
    chain = amdm.chain(helper, make_cond(2), neg, weight=0.866, range_start=0.1, range_end=1.0)
    _, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=steps, base_weight=0.5,
                              aggregation=amdm.aggregation(window_unit="percent", window_start=0.0, window_end=0.4))
    s = json.loads(ui["amdm_summary"][0])
    a, b = s["window_steps"]
    assert a > 1 and len(calls) == b - a + 1 == s["members"][1]["evaluations"]
