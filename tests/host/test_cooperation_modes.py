"""Model Guidance (autoguidance), Superposition (SuperDiff) and step-count-invariant AMDM in the real host.

Model guidance is checked against the stock KSampler (w = 1, bit for bit) and against the formula
applied to each member's own stock predictions (calc_cond_batch), at one state and along a manual
sampler loop. Superposition with two identical members is checked against the core's
superpose_sample driven by the same host model through a stock CFGGuider, and against a one-member
Euler-Maruyama loop written out here.
"""
import json
import math

import pytest
import torch

from devtools import reliability_models as rm


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def summary(ui):
    return json.loads(ui["amdm_summary"][0])


@pytest.fixture(scope="module")
def sd3(comfy, tiny_models, load_unet):
    """sd3() -> a clone of the tiny SD3-type (flow) model; sd3(shift) -> the file loaded again with the
    stock ModelSamplingSD3 node (as tests/host/test_flow_members.py does)."""
    import comfy_extras.nodes_model_advanced as adv
    path = rm.make_reliability_models(tiny_models.models_dir)["sd3"]
    second = {}

    def _load(shift=None):
        if shift is None:
            return load_unet(path.name)
        if shift not in second:
            second[shift] = comfy.nodes.UNETLoader().load_unet(path.name, "default")[0]
        return adv.ModelSamplingSD3().patch(second[shift], float(shift))[0]
    return _load


def flow_latent(size=32):
    return {"samples": torch.zeros(1, 16, size // 8, size // 8)}


class StockPredictions:
    """A member's own raw predictions (cond, uncond) from the host's calc_cond_batch, at any state."""

    def __init__(self, comfy, model, pos, neg, noise, seed):
        self.comfy, self.model = comfy, model
        comfy.model_management.load_models_gpu([model])
        model.pre_run()
        conds = {"positive": comfy.sampler_helpers.convert_cond(pos), "negative": comfy.sampler_helpers.convert_cond(neg)}
        self.conds = comfy.samplers.process_conds(model.model, noise, conds, "cpu", None, None, seed)

    def __call__(self, x, sigma):
        s = torch.as_tensor(sigma).reshape(1).expand(x.shape[0])
        c, u = self.comfy.samplers.calc_cond_batch(self.model.model, [self.conds["positive"], self.conds["negative"]],
                                                   x, s, {})
        return c, u


def guided(form, w, cfg, strong, weak, x, sigma):
    sc, su = strong(x, sigma)
    wc, _ = weak(x, sigma)
    if form == "autoguidance":
        return wc + (sc - wc) * w
    return su + (sc - su) * cfg + (sc - wc) * (w - 1)


def guidance(amdm, **kw):
    return amdm.pack.nodes.node_guidance.ModelGuidance.execute(**{
        "form": "autoguidance_cfg", "w": 2.0, "window_unit": "percent", "window_start": 0.0, "window_end": 1.0,
        **kw}).args[0]


def superposition(amdm, **kw):
    return amdm.pack.nodes.node_superpose.Superposition.execute(**{"mode": "or", "temperature": 1.0, **kw}).args[0]


# -- Model Guidance --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler_name, scheduler", [("euler", "normal"), ("dpmpp_2m", "karras"),
                                                     ("uni_pc", "normal"), ("euler_ancestral", "simple")])
def test_guidance_w1_cfg_form_is_the_stock_ksampler_with_the_strong_model(amdm, model_a, model_b, make_cond,
                                                                          empty_latent, stock_ksampler,
                                                                          sampler_name, scheduler):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, cfg=5.0, weight=1.0)
    got, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=7, steps=5, cfg=3.0,
                                sampler_name=sampler_name, scheduler=scheduler,
                                aggregation=guidance(amdm, form="autoguidance_cfg", w=1.0))
    want = stock_ksampler(model_a, pos, neg, empty_latent(), seed=7, steps=5, cfg=3.0, sampler_name=sampler_name,
                          scheduler=scheduler)
    assert torch.equal(got["samples"], want["samples"])
    s = summary(ui)
    assert s["operator"] == "guidance" and s["guidance"]["evaluations_per_step"] == 2     # w = 1: weak not read
    assert s["guidance"]["evaluations"]["weak_cond"] == 0 and s["members"][1]["evaluations"] == 0


def test_guidance_w1_plain_form_is_the_stock_ksampler_at_cfg_1(amdm, model_a, model_b, make_cond, empty_latent,
                                                               stock_ksampler):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    got, _, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=8, steps=5, cfg=1.0,
                             sampler_name="dpmpp_2m", aggregation=guidance(amdm, form="autoguidance", w=1.0))
    want = stock_ksampler(model_a, pos, neg, empty_latent(), seed=8, steps=5, cfg=1.0, sampler_name="dpmpp_2m")
    assert torch.equal(got["samples"], want["samples"])
    assert summary(ui)["guidance"]["evaluations"] == {"strong_cond": 5, "strong_uncond": 0, "weak_cond": 0}


@pytest.mark.parametrize("form", ["autoguidance", "autoguidance_cfg"])
def test_guidance_w2_is_the_formula_on_the_members_own_predictions(amdm, comfy, model_a, model_b, make_cond,
                                                                   empty_latent, form):
    """A manual euler loop over the members' stock predictions, combined by hand, against the node."""
    pos_a, pos_b, neg, seed, steps, cfg, w = make_cond(1), make_cond(2), make_cond(0.0), 5, 4, 3.0, 2.0
    chain = amdm.chain(model_b, pos_b, neg, cfg=6.0, weight=1.0)   # the weak member's own cfg is not used
    got, text, ui = amdm.sample(model_a, pos_a, neg, chain, empty_latent(), seed=seed, steps=steps, cfg=cfg,
                                aggregation=guidance(amdm, form=form, w=w))
    ms = model_a.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "normal", steps)
    noise = comfy.sample.prepare_noise(empty_latent()["samples"], seed)
    with torch.inference_mode():
        strong = StockPredictions(comfy, model_a, pos_a, neg, noise, seed)
        weak = StockPredictions(comfy, model_b, pos_b, neg, noise, seed)
        x = ms.noise_scaling(sigmas[0], noise, torch.zeros_like(noise), True)
        for j in range(steps):
            d = guided(form, w, cfg, strong, weak, x, sigmas[j])
            x = x + (x - d) / sigmas[j] * (sigmas[j + 1] - sigmas[j])
        model_a.cleanup()
        model_b.cleanup()
    out = model_a.model.process_latent_in(got["samples"])
    assert rel_err(out, x) < 1e-5
    s = summary(ui)
    per_step = 2 if form == "autoguidance" else 3
    g = s["guidance"]
    assert g["evaluations_per_step"] == per_step and g["guided_steps"] == steps
    assert sum(g["evaluations"].values()) == per_step * steps and g["base_alone_evaluations"] == 0
    assert f"{per_step} evaluations per step in the window" in text


def test_guidance_window_limits_the_weak_members_evaluations(amdm, model_a, model_b, make_cond, empty_latent,
                                                             stock_ksampler):
    pos, neg = make_cond(1), make_cond(0.0)
    weak, calls = amdm.count_calls(model_b)
    chain = amdm.chain(weak, make_cond(2), neg, weight=1.0)
    steps = 10
    got, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=steps, cfg=2.0,
                                aggregation=guidance(amdm, window_unit="steps", window_start=2, window_end=5))
    s = summary(ui)
    assert s["window_steps"] == [2, 5] and len(calls) == 4 and s["members"][1]["evaluations"] == 4
    assert s["guidance"]["evaluations"] == {"strong_cond": 4, "strong_uncond": 4, "weak_cond": 4}
    assert s["guidance"]["base_alone_evaluations"] == 6 and s["members"][0]["evaluations"] == steps
    assert "guided steps 2-5 of 10" in text
    # an empty window: the base alone with its own CFG, the stock KSampler
    got, text, _ = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=4, cfg=2.0,
                               aggregation=guidance(amdm, window_unit="steps", window_start=7, window_end=9))
    assert torch.equal(got["samples"], stock_ksampler(model_a, pos, neg, empty_latent(), steps=4)["samples"])


def test_guidance_keeps_the_unmasked_region_when_inpainting(amdm, model_a, model_b, make_cond, stock_ksampler):
    """The combination of raw predictions is masked as KSamplerX0Inpaint masks one model: where the noise
    mask is 0 the result is the stock KSampler's (the input latent), where it is 1 the guided one."""
    pos, neg = make_cond(1), make_cond(0.0)
    latent = amdm.random_latent((1, 4, 8, 8))
    mask = torch.zeros(1, 8, 8)
    mask[:, :, 4:] = 1.0
    latent["noise_mask"] = mask
    chain = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    got = amdm.sample(model_a, pos, neg, chain, dict(latent), steps=4, cfg=2.0,
                      aggregation=guidance(amdm, w=2.0))[0]["samples"]
    want = stock_ksampler(model_a, pos, neg, dict(latent), steps=4, cfg=2.0)["samples"]
    assert torch.allclose(got[..., :4], want[..., :4], atol=1e-5)
    assert rel_err(got[..., 4:], want[..., 4:]) > 1e-3


def test_guidance_refuses_two_helpers_and_zero_helpers_before_loading(amdm, model_a, model_b, make_cond,
                                                                      empty_latent, record_load_models_gpu):
    pos, neg = make_cond(1), make_cond(0.0)
    two = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    two = amdm.chain(model_b, make_cond(3), neg, weight=1.0, previous=two)
    with pytest.raises(ValueError, match=r"Model Guidance takes exactly one helper member.*2 helper\(s\).*member 2.*"
                                         r"member 3"):
        amdm.sample(model_a, pos, neg, two, empty_latent(), aggregation=guidance(amdm))
    off = amdm.chain(model_b, make_cond(2), neg, weight=0.0)
    with pytest.raises(ValueError, match=r"0 helper\(s\).*switched off \(weight 0\): member 2"):
        amdm.sample(model_a, pos, neg, off, empty_latent(), aggregation=guidance(amdm))
    with pytest.raises(ValueError, match="'w' = -1.0 must be a finite number >= 0"):
        guidance(amdm, w=-1.0)
    with pytest.raises(ValueError, match="base member has a noise range.*guidance window"):
        amdm.sample(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=1.0), empty_latent(),
                    aggregation=guidance(amdm), base_range=(0.0, 0.5, "percent"))
    assert record_load_models_gpu.calls == []


def test_guidance_with_flow_members(amdm, comfy, sd3, make_cond, stock_ksampler):
    strong, weak_model, pos, neg = sd3(), sd3(shift=6.0), make_cond(1), make_cond(0.0)
    chain = amdm.chain(weak_model, make_cond(2), neg, weight=1.0)
    got = amdm.sample(strong, pos, neg, chain, flow_latent(), steps=4, cfg=2.0, sampler_name="dpmpp_2m",
                      scheduler="simple", aggregation=guidance(amdm, w=1.0))[0]
    want = stock_ksampler(strong, pos, neg, flow_latent(), steps=4, cfg=2.0, sampler_name="dpmpp_2m",
                          scheduler="simple")
    assert torch.equal(got["samples"], want["samples"])
    # w = 2, one euler step: the output is the guided x0 prediction at the initial state
    got, _, ui = amdm.sample(strong, pos, neg, chain, flow_latent(), seed=3, steps=1, cfg=2.0, scheduler="simple",
                             aggregation=guidance(amdm, w=2.0))
    ms = strong.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "simple", 1)
    noise = comfy.sample.prepare_noise(flow_latent()["samples"], 3)
    with torch.inference_mode():
        s_pred = StockPredictions(comfy, strong, pos, neg, noise, 3)
        w_pred = StockPredictions(comfy, weak_model, make_cond(2), neg, noise, 3)
        x = ms.noise_scaling(sigmas[0], noise, torch.zeros_like(noise), True)
        want = guided("autoguidance_cfg", 2.0, 2.0, s_pred, w_pred, x, sigmas[0])
        strong.cleanup()
        weak_model.cleanup()
    assert rel_err(strong.model.process_latent_in(got["samples"]), want) < 1e-5
    assert summary(ui)["guidance"]["evaluations"] == {"strong_cond": 1, "strong_uncond": 1, "weak_cond": 1}


# -- Superposition ----------------------------------------------------------------------------------------

def core_superpose_with_stock_guider(comfy, pack, model, pos, neg, latent, *, seed, steps, cfg, scheduler="normal"):
    """The core's superpose_sample with the host model as both members' denoiser, run through a stock
    CFGGuider and KSAMPLER (noise, scaling and latent handling as a KSampler)."""
    core = pack.amdm_core

    def sampler_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        den = lambda xx, s: model_k(xx, s, **extra_args)   # noqa: E731
        out, _ = core.superpose_sample([den, den], sigmas, x, noise=core.seeded_noise(seed), mode="or",
                                       log_prior=[0.0, 0.0])
        return out
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(cfg)
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, seed)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    with torch.inference_mode():
        return guider.sample(noise, samples, comfy.samplers.KSAMPLER(sampler_fn), sigmas, seed=seed)


def one_member_sde(comfy, pack, model, pos, neg, latent, *, seed, steps, cfg):
    """The reverse SDE of one member alone, written out (x += 2 dsigma v + sqrt(2 |dsigma| sigma) z)."""
    noise_source = pack.amdm_core.seeded_noise(seed)

    def sampler_fn(model_k, x, sigmas, extra_args=None, callback=None, disable=None):
        s = [float(v) for v in sigmas]
        for j in range(len(s) - 1):
            d = model_k(x, x.new_full([x.shape[0]], s[j]), **extra_args)
            if s[j + 1] == 0:
                return d
            ds = s[j + 1] - s[j]
            x = x + (x - d) / s[j] * (2 * ds) + noise_source(j, 0, x) * math.sqrt(2 * abs(ds) * s[j])
        return x
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(pos, neg)
    guider.set_cfg(cfg)
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, seed)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", steps)
    with torch.inference_mode():
        return guider.sample(noise, samples, comfy.samplers.KSAMPLER(sampler_fn), sigmas, seed=seed)


def test_superposition_or_of_identical_members_is_the_cores_sde_and_deterministic(amdm, comfy, model_a, make_cond,
                                                                                  empty_latent):
    pos, neg, steps, cfg = make_cond(1), make_cond(0.0), 8, 2.0
    chain = amdm.chain(model_a, pos, neg, cfg=cfg, weight=1.0)
    got, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=11, steps=steps, cfg=cfg,
                                sampler_name="dpmpp_2m", aggregation=superposition(amdm, mode="or"))
    core = core_superpose_with_stock_guider(comfy, amdm.pack, model_a, pos, neg, empty_latent(), seed=11,
                                            steps=steps, cfg=cfg)
    assert torch.equal(got["samples"], core)
    alone = one_member_sde(comfy, amdm.pack, model_a, pos, neg, empty_latent(), seed=11, steps=steps, cfg=cfg)
    assert rel_err(got["samples"], alone) < 1e-5
    again = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=11, steps=steps, cfg=cfg,
                        aggregation=superposition(amdm))[0]
    other = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=12, steps=steps, cfg=cfg,
                        aggregation=superposition(amdm))[0]
    assert torch.equal(again["samples"], got["samples"]) and not torch.equal(other["samples"], got["samples"])
    s = summary(ui)
    p = s["superposition"]
    assert s["operator"] == "superpose" and p["mode"] == "or" and p["steps"] == steps
    assert p["sampler_used"] is False and p["sampler_ignored"] == "dpmpp_2m"
    assert p["kappa_mean"] == [0.5, 0.5] and p["evaluations_per_step"] == 4 and p["member_calls_per_step"] == 2
    assert [m["evaluations"] for m in s["members"]] == [steps, steps]
    assert "Superposition (OR, temperature 1)" in text and "sampler 'dpmpp_2m' not used" in text


def test_superposition_and_keeps_the_log_densities_equal(amdm, model_a, model_b, make_cond, empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, cfg=3.0, weight=2.0)
    got, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=4, steps=10, cfg=2.0, base_weight=1.0,
                                aggregation=superposition(amdm, mode="and"))
    p = summary(ui)["superposition"]
    assert torch.isfinite(got["samples"]).all()
    ll = p["log_density"][0]
    # ll_k + log w_k equal (AND) while the log-densities themselves moved far from 0
    assert max(abs(v) for v in ll) > 1.0
    assert abs((ll[0] + p["log_prior"][0]) - (ll[1] + p["log_prior"][1])) < 1e-3
    assert p["max_log_density_gap"] < 1e-3 * max(1.0, max(abs(v) for v in ll))
    assert p["log_prior"] == [0.0, round(math.log(2.0), 4)] and p["kappa_mean"] != [0.5, 0.5]
    or_run = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=4, steps=10, cfg=2.0, base_weight=1.0,
                         aggregation=superposition(amdm, mode="or", temperature=1.0))[0]
    assert rel_err(or_run["samples"], got["samples"]) > 1e-4
    assert "Superposition (AND)" in text


def test_superposition_of_flow_members(amdm, sd3, make_cond):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(sd3(shift=6.0), make_cond(2), neg, cfg=2.0, weight=1.0)
    got, _, ui = amdm.sample(sd3(), pos, neg, chain, flow_latent(), seed=2, steps=6, cfg=2.0, scheduler="simple",
                             aggregation=superposition(amdm, mode="or"))
    again = amdm.sample(sd3(), pos, neg, chain, flow_latent(), seed=2, steps=6, cfg=2.0, scheduler="simple",
                        aggregation=superposition(amdm, mode="or"))[0]
    p = summary(ui)["superposition"]
    assert torch.isfinite(got["samples"]).all() and torch.equal(got["samples"], again["samples"])
    assert p["steps"] == 6 and all(math.isfinite(v) for v in p["log_density"][0])
    and_run, _, ui = amdm.sample(sd3(), pos, neg, chain, flow_latent(), seed=2, steps=6, cfg=2.0, scheduler="simple",
                                 aggregation=superposition(amdm, mode="and"))
    assert torch.isfinite(and_run["samples"]).all() and summary(ui)["superposition"]["max_log_density_gap"] < 1e-3
    with pytest.raises(ValueError, match="flow models.*at least 3 steps.*'steps'"):
        amdm.sample(sd3(), pos, neg, chain, flow_latent(), steps=2, scheduler="simple",
                    aggregation=superposition(amdm))


def test_superposition_bad_inputs_are_named(amdm, model_a, model_b, make_cond, empty_latent, record_load_models_gpu):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    with pytest.raises(ValueError, match="'temperature' = 2.0 applies to mode 'or' only"):
        superposition(amdm, mode="and", temperature=2.0)
    with pytest.raises(ValueError, match="'temperature' = nan must be a finite number"):
        superposition(amdm, temperature=float("nan"))
    with pytest.raises(ValueError, match="'mode' = 'xor' is not one of"):
        superposition(amdm, mode="xor")
    with pytest.raises(ValueError, match="base member.*'base_weight' = 0.*log w"):
        amdm.sample(model_a, pos, neg, chain, empty_latent(), base_weight=0.0, aggregation=superposition(amdm))
    with pytest.raises(ValueError, match="Superposition needs at least one helper member with weight > 0"):
        amdm.sample(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.0), empty_latent(),
                    aggregation=superposition(amdm))
    assert record_load_models_gpu.calls == []


@pytest.mark.parametrize("mode", ["guidance", "superposition"])
def test_guider_route_equals_the_sampler_node(amdm, model_a, model_b, make_cond, empty_latent, mode):
    """Multi-Model Guider + stock RandomNoise/KSamplerSelect/BasicScheduler + SamplerCustomAdvanced gives
    the Multi-Model Sampler's latent bit for bit in both modes (superposition: whatever SAMPLER)."""
    import comfy_extras.nodes_custom_sampler as cs

    def v3_or_v1(cls, **kw):
        return cls.execute(**kw).args if hasattr(cls, "define_schema") else getattr(cls(), cls.FUNCTION)(**kw)
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=1.0)
    agg = guidance(amdm, window_start=0.0, window_end=0.5) if mode == "guidance" else superposition(amdm)
    node_out = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=9, steps=5, cfg=2.0,
                           sampler_name="dpmpp_2m", scheduler="karras", aggregation=agg)[0]
    with torch.inference_mode():
        guider = amdm.guider(model_a, pos, neg, chain, cfg=2.0, base_weight=1.0, aggregation=agg)
        noise = v3_or_v1(cs.RandomNoise, noise_seed=9)[0]
        sampler = v3_or_v1(cs.KSamplerSelect, sampler_name="dpmpp_2m" if mode == "guidance" else "euler")[0]
        sigmas = v3_or_v1(cs.BasicScheduler, model=model_a, scheduler="karras", steps=5, denoise=1.0)[0]
        out = v3_or_v1(cs.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                       latent_image=empty_latent())[0]
    assert torch.equal(out["samples"], node_out["samples"])


# -- step-count-invariant AMDM -----------------------------------------------------------------------------

def test_per_noise_interval_keeps_the_retained_share_across_step_counts(amdm, model_a, model_b, make_cond,
                                                                        empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    shares = {}
    for strength in ("per step", "per noise interval"):
        agg = amdm.aggregation(window_unit="percent", window_start=0.0, window_end=0.4, strength=strength,
                               retained_share=0.5)
        for steps in (10, 20, 50):
            _, text, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(32, 32), steps=steps, base_weight=0.5,
                                      aggregation=agg)
            s = summary(ui)
            assert s["strength"] == strength and s["window_steps"][0] == 1
            shares[strength, steps] = s["retained_share"]
    interval = [shares["per noise interval", n] for n in (10, 20, 50)]
    assert max(interval) - min(interval) < 1e-5 and interval[0] == pytest.approx(0.5, abs=1e-5)
    per_step = [shares["per step", n] for n in (10, 20, 50)]
    assert per_step[0] > 10 * per_step[2]        # constant weights: the pull grows with the step count
    assert "the base keeps 0.5" in text


def test_per_step_strength_is_the_default_bit_for_bit(amdm, model_a, model_b, make_cond, empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    node = amdm.pack.nodes.node_aggregate.SphericalAggregate
    old = node.execute("spherical", "percent", 0.0, 0.2, "independent", "independent", True).args[0]
    new = node.execute("spherical", "percent", 0.0, 0.2, "independent", "independent", True, "per step", 0.3).args[0]
    a = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=old)[0]
    b = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=new)[0]
    c = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=None)[0]
    assert torch.equal(a["samples"], b["samples"]) and torch.equal(a["samples"], c["samples"])
    with pytest.raises(ValueError, match="'retained_share' = 0.0 must be a finite number > 0"):
        node.execute("spherical", "percent", 0.0, 0.2, "independent", "independent", True, "per noise interval", 0.0)
