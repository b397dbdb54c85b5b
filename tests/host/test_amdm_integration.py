"""Host integration: interrupt, patched clones, validation before loading, no mutation, the
reference code's arithmetic, and the GUIDER route through the stock SamplerCustomAdvanced."""
import copy
import json
import math

import pytest
import torch


def snapshot_model(m):
    return {
        "model_options": repr(m.model_options),
        "patches": {k: len(v) for k, v in m.patches.items()},
        "patches_uuid": m.patches_uuid,
        "object_patches": sorted(m.object_patches),
        "additional_models": sorted(m.additional_models),
        "callbacks": repr(m.callbacks), "wrappers": repr(m.wrappers),
        "hook_mode": m.hook_mode,
    }


def snapshot_cond(c):
    return [(t.clone(), {k: (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)) for k, v in d.items()})
            for t, d in c]


def same_cond(a, b):
    return len(a) == len(b) and all(torch.equal(t1, t2) and d1.keys() == d2.keys() and
                                    all(torch.equal(d1[k], d2[k]) if torch.is_tensor(d1[k]) else d1[k] == d2[k]
                                        for k in d1) for (t1, d1), (t2, d2) in zip(a, b))


def test_interrupt_mid_window_leaves_models_clean(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    pos, neg, pos_b = make_cond(1), make_cond(0.0), make_cond(2)
    helper, calls = amdm.count_calls(model_b)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=4)
    chain = amdm.chain(helper, pos_b, neg, weight=0.866)
    before = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=agg)[0]
    snaps = [snapshot_model(m) for m in (model_a, helper)]

    stop = amdm.count_calls(model_b)[0]
    n = []

    def interrupt_on_third(apply_model, args):
        n.append(1)
        if len(n) == 3:
            comfy.model_management.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])
    stop.set_model_unet_function_wrapper(interrupt_on_third)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        amdm.sample(model_a, pos, neg, amdm.chain(stop, pos_b, neg, weight=0.866), empty_latent(), steps=8,
                    base_weight=0.5, aggregation=agg)
    assert len(n) == 3                                   # stopped inside the window, at the next member call
    assert not comfy.model_management.processing_interrupted()
    assert model_a.model.current_patcher is None and model_b.model.current_patcher is None
    assert [snapshot_model(m) for m in (model_a, helper)] == snaps
    after = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=agg)[0]
    assert torch.equal(before["samples"], after["samples"])


def test_interrupt_after_the_window(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    pos, neg = make_cond(1), make_cond(0.0)
    base, calls = amdm.count_calls(model_a)

    def late_interrupt(apply_model, args):
        calls.append(1)
        if len(calls) == 6:
            comfy.model_management.interrupt_current_processing(True)
        return apply_model(args["input"], args["timestep"], **args["c"])
    base.set_model_unet_function_wrapper(late_interrupt)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        amdm.sample(base, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.866), empty_latent(), steps=10,
                    base_weight=0.5, aggregation=agg)
    assert model_a.model.current_patcher is None


def test_lora_patched_clones_of_one_checkpoint(amdm, comfy, load_unet, load_lora, tiny_models, make_cond, empty_latent):
    """Base = UNet a, helper = UNet a + LoRA (a clone sharing the base's weights): the result equals the
    same setting with the LoRA'd helper loaded as a separate model, and differs from no LoRA."""
    pos, neg, pos2 = make_cond(1), make_cond(0.0), make_cond(2)
    base = load_unet("a")
    clone_lora = load_lora(load_unet("a"))
    assert clone_lora.is_clone(base) and not clone_lora.clone_has_same_weights(base)
    separate = comfy.nodes.UNETLoader().load_unet(tiny_models.unet["a"].name, "default")[0]
    separate_lora = load_lora(separate)
    assert not separate_lora.is_clone(base)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=3)
    kw = dict(steps=6, base_weight=0.5, aggregation=agg)
    shared, text, ui = amdm.sample(base, pos, neg, amdm.chain(clone_lora, pos2, neg, weight=0.866), empty_latent(), **kw)
    alone, *_ = amdm.sample(base, pos, neg, amdm.chain(separate_lora, pos2, neg, weight=0.866), empty_latent(), **kw)
    plain, *_ = amdm.sample(base, pos, neg, amdm.chain(load_unet("a"), pos2, neg, weight=0.866), empty_latent(), **kw)
    assert torch.allclose(shared["samples"], alone["samples"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(shared["samples"], plain["samples"], atol=1e-3)
    assert json.loads(ui["amdm_summary"][0])["weight_swaps"] > 0
    # and the base model is left unpatched for the next stock run
    again, *_ = amdm.sample(base, pos, neg, amdm.chain(separate_lora, pos2, neg, weight=0.866), empty_latent(), **kw)
    assert torch.equal(again["samples"], alone["samples"])


def _stock(name, comfy):
    import comfy_extras.nodes_model_advanced as adv
    return getattr(adv, name)()


@pytest.mark.parametrize("case, message", [
    ("sdxl_latent", r"member 2 .*SDXL latent.*different VAE latent spaces"),
    ("flow", r"member 2 is a flow-type model"),
    ("zsnr", r"member 2 has sigma_max"),
    ("no_helpers", r"needs at least 2 members"),
    ("empty_positive", r"member 2 \(node #None\)|member 2: 'positive' conditioning is empty"),
    ("negative_weight", r"member 2.*'weight' = -1.0 must be"),
    ("base_nan_cfg", r"base member: 'cfg' = nan"),
    ("all_zero", r"every helper weight are 0"),
])
def test_validation_errors_name_the_member_before_loading(amdm, comfy, model_a, model_b, make_cond, empty_latent,
                                                          record_load_models_gpu, case, message):
    pos, neg = make_cond(1), make_cond(0.0)
    helper, weight, base_cfg, base_weight, hpos = model_b, 0.866, 2.0, 0.5, make_cond(2)
    if case == "sdxl_latent":
        helper = model_b.clone()
        helper.add_object_patch("latent_format", comfy.latent_formats.SDXL())
    elif case == "flow":
        helper = _stock("ModelSamplingSD3", comfy).patch(model_b, 3.0)[0]
    elif case == "zsnr":
        helper = _stock("ModelSamplingDiscrete", comfy).patch(model_b, "eps", True)[0]
    elif case == "base_nan_cfg":
        base_cfg = float("nan")
    elif case == "all_zero":
        weight, base_weight = 0.0, 0.0
    with pytest.raises(ValueError, match=message):
        if case == "empty_positive":
            hpos = []
        if case == "negative_weight":
            weight = -1.0
        chain = () if case == "no_helpers" else amdm.chain(helper, hpos, neg, weight=weight)
        amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=4, cfg=base_cfg, base_weight=base_weight)
    assert record_load_models_gpu.calls == []


def test_nine_members_are_refused(amdm, load_unet, make_cond):
    neg = make_cond(0.0)
    chain = None
    for i in range(7):
        chain = amdm.chain(load_unet("b"), make_cond(i), neg, weight=0.5, previous=chain)
    assert len(chain) == 7
    with pytest.raises(ValueError, match=r"member 9: the chain has more than 8 members"):
        amdm.chain(load_unet("b"), make_cond(9), neg, weight=0.5, previous=chain)


def test_inputs_are_not_mutated_on_success_and_failure(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    pos, neg, pos_b = make_cond(1), make_cond(0.0), make_cond(2)
    model_b.set_model_unet_function_wrapper(lambda f, a: f(a["input"], a["timestep"], **a["c"]))
    snaps = [snapshot_model(m) for m in (model_a, model_b)]
    conds = [snapshot_cond(c) for c in (pos, neg, pos_b)]
    chain = amdm.chain(model_b, pos_b, neg, weight=0.866)
    latent = empty_latent()
    latent_before, keys_before = latent["samples"].clone(), set(latent)
    amdm.sample(model_a, pos, neg, chain, latent, steps=5, base_weight=0.5,
                aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=2))
    with pytest.raises(ValueError, match="CFG\\+\\+"):
        amdm.sample(model_a, pos, neg, chain, latent, steps=5, sampler_name="euler_cfg_pp",
                    aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=2))
    assert [snapshot_model(m) for m in (model_a, model_b)] == snaps
    assert all(same_cond(c, s) for c, s in zip((pos, neg, pos_b), conds))
    # keys as the host's EmptyLatentImage made them (0.33 adds downscale_ratio_spacial), unchanged
    assert torch.equal(latent["samples"], latent_before) and set(latent) == keys_before


def stock_denoiser(comfy, model, pos, neg, cfg, noise, sigmas, seed):
    """D(x, sigma) of one member from stock primitives only (load, process_conds, sampling_function)."""
    comfy.model_management.load_models_gpu([model])
    conds = {"positive": comfy.sampler_helpers.convert_cond(pos), "negative": comfy.sampler_helpers.convert_cond(neg)}
    conds = comfy.samplers.process_conds(model.model, noise, conds, model.load_device, None, None, seed)
    mo = {"transformer_options": {"sample_sigmas": sigmas}}

    def D(x, sigma):
        model.pre_run()                   # the BaseModel's current patcher, as outer_sample sets it
        s = torch.full((x.shape[0],), float(sigma), dtype=torch.float32)
        return comfy.samplers.sampling_function(model.model, x.float(), s, conds["negative"], conds["positive"], cfg,
                                                model_options=mo, seed=seed).double()
    return D


@pytest.mark.parametrize("steps, end", [(10, 3), (20, 3)])
def test_reference_preset_matches_the_reference_code_arithmetic(amdm, comfy, model_a, model_b, make_cond,
                                                                empty_latent, reference_code, steps, end):
    """euler + ddim_uniform + the reference-compatible settings, in the real host, against an
    independent implementation of the reference code's DDIM arithmetic on the same two members."""
    pos_a, pos_b, neg = make_cond(1), make_cond(2), make_cond(0.0)
    seed, n = 3, 4 * 8 * 8
    chain = amdm.chain(model_b, pos_b, neg, cfg=3.0, weight=math.sqrt(0.75))
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=end, normalize_weights=False)
    dev = amdm.deviation(step=0.55 * 8 / math.sqrt(n), helper_step=0.45 * 8 / math.sqrt(n),
                         target="reference", members="all")
    with torch.inference_mode():
        out, text, _ = amdm.sample(model_a, pos_a, neg, chain, empty_latent(), seed=seed, steps=steps, cfg=2.5,
                                   sampler_name="euler", scheduler="ddim_uniform", base_weight=0.5,
                                   aggregation=agg, deviation=dev)
        ms = model_a.get_model_object("model_sampling")
        sigmas = comfy.samplers.calculate_sigmas(ms, "ddim_uniform", steps)
        g = torch.Generator().manual_seed(seed)
        z = [torch.randn((1, 4, 8, 8), generator=g) for _ in range(2)]
        dens = [stock_denoiser(comfy, model_a, pos_a, neg, 2.5, z[0], sigmas, seed),
                stock_denoiser(comfy, model_b, pos_b, neg, 3.0, z[1], sigmas, seed)]
        table = ms.sigmas.double()
        ac = 1.0 / (1.0 + table ** 2)

        def eps_fn(D):
            def f(x_vp, t):
                s = float(table[t])
                xk = x_vp * math.sqrt(1 + s * s)
                return (xk - D(xk, s)) / s
            return f
        s0 = float(sigmas[0])
        timesteps = [int(ms.timestep(s)) for s in sigmas[:-1]]
        ref = reference_code.reference_code_ddim(
            [eps_fn(D) for D in dens], [zk.double() * s0 / math.sqrt(1 + s0 * s0) for zk in z], timesteps, ac,
            [0.5, math.sqrt(0.75)], [0.55 * 8, 0.45 * 8], 1, end)
        got = model_a.model.process_latent_in(out["samples"]).double()
    assert f"aggregated steps 1-{end}" in text
    assert float((got - ref).norm() / ref.norm()) < 1e-4


def test_guider_route_equals_the_sampler_node(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    """Multi-Model Guider + stock RandomNoise/KSamplerSelect/BasicScheduler + SamplerCustomAdvanced
    gives the Multi-Model Sampler's latent bit for bit; a custom schedule works too."""
    import comfy_extras.nodes_custom_sampler as cs
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    agg = amdm.aggregation(window_unit="percent", window_start=0.0, window_end=0.3)
    node_out, text, _ = amdm.sample(model_a, pos, neg, chain, empty_latent(), seed=11, steps=6, cfg=2.0,
                                    sampler_name="dpmpp_2m", scheduler="karras", base_weight=0.5, aggregation=agg)

    def call(node_cls, method, *args):
        out = getattr(node_cls, method)(*args) if isinstance(node_cls, type) and hasattr(node_cls, "define_schema") \
            else getattr(node_cls(), method)(*args)
        return out.args if hasattr(out, "args") else out

    def v3_or_v1(cls, **kw):
        if hasattr(cls, "define_schema"):
            return cls.execute(**kw).args
        return getattr(cls(), cls.FUNCTION)(**kw)
    with torch.inference_mode():
        guider = amdm.guider(model_a, pos, neg, chain, cfg=2.0, base_weight=0.5, aggregation=agg)
        noise = v3_or_v1(cs.RandomNoise, noise_seed=11)[0]
        sampler = v3_or_v1(cs.KSamplerSelect, sampler_name="dpmpp_2m")[0]
        sigmas = v3_or_v1(cs.BasicScheduler, model=model_a, scheduler="karras", steps=6, denoise=1.0)[0]
        out = v3_or_v1(cs.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                       latent_image=empty_latent())[0]
        assert torch.equal(out["samples"], node_out["samples"])
        assert guider.report.trace.aggregated_steps == [int(t) for t in text.split("aggregated steps ")[1].split(" ")[0].split("-")][:1] + guider.report.trace.aggregated_steps[1:]
        custom = torch.tensor([14.6, 9.0, 5.0, 2.0, 0.8, 0.2, 0.0])
        out2 = v3_or_v1(cs.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=sampler, sigmas=custom,
                        latent_image=empty_latent())[0]
    assert torch.isfinite(out2["samples"]).all()
    assert guider.report.trace.steps == 6 and guider.report.trace.aggregated_steps


@pytest.mark.parametrize("steps", [10, 40])
def test_percent_window_keeps_its_noise_range_across_step_counts(amdm, model_a, model_b, make_cond, empty_latent, steps):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    agg = amdm.aggregation(window_unit="percent", window_start=0.0, window_end=0.3)
    _, _, ui = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=steps, base_weight=0.5, aggregation=agg)
    s = json.loads(ui["amdm_summary"][0])
    low = float(model_a.get_model_object("model_sampling").percent_to_sigma(0.3))
    assert s["window_sigmas"][1] >= low                   # the last aggregated step starts inside the range
    assert s["window_steps"][0] == 1
    assert s["members"][1]["evaluations"] == s["window_steps"][1] + 1
