"""AMDM through the real host: evaluation counts, loading, every sampler, policies, LoRA clones."""

import pytest
import torch



@pytest.mark.parametrize("k, steps, end", [(2, 8, 3), (3, 10, 2)])
def test_evaluations_and_one_load_call(amdm, load_unet, make_cond, empty_latent, record_load_models_gpu, k, steps, end):
    base, base_calls = amdm.count_calls(load_unet("a"))
    helpers = [amdm.count_calls(load_unet(v)) for v in ("b", "c")[:k - 1]]
    chain = None
    for i, (m, _) in enumerate(helpers):
        chain = amdm.chain(m, make_cond(10 + i), make_cond(0.0), cfg=3.0, weight=0.8, previous=chain)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=end)
    out, text, _ = amdm.sample(base, make_cond(1), make_cond(0.0), chain, empty_latent(), steps=steps,
                        base_weight=0.5, aggregation=agg)
    assert len(base_calls) == steps
    assert [len(c) for _, c in helpers] == [end + 1] * (k - 1)
    assert f"total {steps + (k - 1) * (end + 1)} model evaluations" in text
    assert f"aggregated steps 1-{end} of {steps}" in text
    sampling_loads = [c for c in record_load_models_gpu.calls if any(m.is_clone(base) for m in c.models)]
    assert len(sampling_loads) == 1
    assert all(any(x.is_clone(m) for x in sampling_loads[0].models) for m, _ in helpers)
    assert torch.isfinite(out["samples"]).all()


def test_aggregation_changes_the_result_and_is_deterministic(amdm, model_a, model_b, make_cond, empty_latent,
                                                             stock_ksampler):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, cfg=2.0, weight=0.866)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=3)
    a1, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=agg)
    a2, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), steps=8, base_weight=0.5, aggregation=agg)
    alone = stock_ksampler(model_a, pos, neg, empty_latent(), steps=8)
    assert torch.equal(a1["samples"], a2["samples"])
    assert not torch.allclose(a1["samples"], alone["samples"], atol=1e-3)


def sampler_names(comfy):
    return list(comfy.samplers.KSampler.SAMPLERS)


def test_every_host_sampler_runs_inside_the_window(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    """Every sampler ComfyUI lists: CFG++ ones are refused with a clear message, all others run the
    window per member and give finite, reproducible latents with the expected helper evaluations."""
    pos, neg = make_cond(1), make_cond(0.0)
    helper, helper_calls = amdm.count_calls(model_b)
    chain = amdm.chain(helper, make_cond(2), neg, cfg=2.0, weight=0.866)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    failures = []
    for sampler_name in sampler_names(comfy):
        helper_calls.clear()
        kw = dict(steps=5, base_weight=0.5, aggregation=agg, sampler_name=sampler_name, scheduler="karras")
        if "cfg_pp" in sampler_name:
            with pytest.raises(ValueError, match="CFG\\+\\+ sampler"):
                amdm.sample(model_a, pos, neg, chain, empty_latent(), **kw)
            continue
        out, text, _ = amdm.sample(model_a, pos, neg, chain, empty_latent(), **kw)
        again, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), **kw)
        if not torch.isfinite(out["samples"]).all():
            failures.append(f"{sampler_name}: not finite")
        if not torch.equal(out["samples"], again["samples"]):
            failures.append(f"{sampler_name}: not reproducible")
        if "aggregated steps 1-2" not in text or len(helper_calls) < 2 * 3:   # 3 helper steps, each run twice
            failures.append(f"{sampler_name}: {text!r}, helper calls {len(helper_calls)}")
    assert not failures, failures


def test_multistep_history_restarts_inside_the_window(amdm, model_a, model_b, make_cond, empty_latent):
    """Inside the window dpmpp_2m takes first-order steps (== euler up to float error); after the
    window it uses its history again."""
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    full = amdm.aggregation(window_unit="steps", window_start=1, window_end=5)          # every step
    part = amdm.aggregation(window_unit="steps", window_start=1, window_end=1)
    kw = dict(steps=6, base_weight=0.5, scheduler="karras")
    e_full, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), sampler_name="euler", aggregation=full, **kw)
    d_full, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), sampler_name="dpmpp_2m", aggregation=full, **kw)
    assert torch.allclose(e_full["samples"], d_full["samples"], rtol=1e-4, atol=1e-4)
    e_part, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), sampler_name="euler", aggregation=part, **kw)
    d_part, *_ = amdm.sample(model_a, pos, neg, chain, empty_latent(), sampler_name="dpmpp_2m", aggregation=part, **kw)
    assert (e_part["samples"] - d_part["samples"]).abs().max() > 1e-3


def test_stochastic_noise_policies(amdm, model_a, make_cond, empty_latent):
    """euler_ancestral in the window. Identical members with shared initial and step noise under
    slerp leave the state untouched (norm ratio exactly 1). Shared step noise under spherical
    weights would add the noise coherently and is refused; independent draws are the default."""
    import json
    pos, neg = make_cond(1), make_cond(0.0)
    same = amdm.chain(model_a, pos, neg, cfg=2.0, weight=1.0)
    win = dict(window_unit="steps", window_start=1, window_end=3)
    shared = amdm.aggregation(mode="slerp", initial_noise="shared", step_noise="shared", **win)
    _, _, ui = amdm.sample(model_a, pos, neg, same, empty_latent(), steps=6, sampler_name="euler_ancestral",
                           aggregation=shared, deviation=amdm.deviation(step=0.0))
    ratios = json.loads(ui["amdm_summary"][0])["norm_ratio"]
    assert ratios == pytest.approx([1.0, 1.0, 1.0], abs=1e-4)
    coherent = amdm.aggregation(step_noise="shared", **win)
    with pytest.raises(ValueError, match="'step_noise' = 'shared' with mode 'spherical'.*inflating"):
        amdm.sample(model_a, pos, neg, same, empty_latent(), steps=6, sampler_name="euler_ancestral",
                    aggregation=coherent)
    # the same setting is harmless, and allowed, with a deterministic sampler
    out, *_ = amdm.sample(model_a, pos, neg, same, empty_latent(), steps=6, sampler_name="euler", aggregation=coherent)
    assert torch.isfinite(out["samples"]).all()
    with pytest.raises(ValueError, match="initial_noise 'shared' with mode 'spherical'"):
        amdm.aggregation(initial_noise="shared")


@pytest.mark.parametrize("denoise, masked, batch", [(0.6, False, 1), (1.0, True, 1), (1.0, False, 2)])
def test_img2img_inpaint_and_batch_with_aggregation(amdm, model_a, model_b, make_cond, empty_latent, denoise, masked,
                                                    batch):
    pos, neg = make_cond(1), make_cond(0.0)
    chain = amdm.chain(model_b, make_cond(2), neg, weight=0.866)
    latent = amdm.random_latent((batch, 4, 8, 8)) if (denoise < 1 or masked) else empty_latent(64, 64, batch)
    if masked:
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., 2:6, 2:6] = 1.0
        latent = dict(latent, noise_mask=mask)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    out, text, _ = amdm.sample(model_a, pos, neg, chain, latent, steps=5, denoise=denoise, base_weight=0.5,
                               aggregation=agg)
    s = out["samples"]
    assert s.shape == (batch, 4, 8, 8) and torch.isfinite(s).all()
    assert "aggregated steps 1-2 of 5" in text
    if masked:   # outside the mask the input latent is kept exactly as the stock inpaint path keeps it
        keep = (mask.expand_as(s) == 0)
        assert torch.allclose(s[keep], latent["samples"][keep], atol=1e-5)
        assert not torch.allclose(s[~keep], latent["samples"][~keep], atol=1e-3)
    if batch == 2:
        assert not torch.allclose(s[0], s[1])


def test_progress_is_one_monotonic_bar_over_every_member_step(amdm, comfy, model_a, model_b, make_cond, empty_latent):
    seen = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        chain = amdm.chain(model_b, make_cond(2), make_cond(0.0), weight=0.866)
        amdm.sample(model_a, make_cond(1), make_cond(0.0), chain, empty_latent(), steps=6, base_weight=0.5,
                    aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=2))
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
    total = 6 + 1 * 3
    values = [v for v, _ in seen]
    if hasattr(comfy.utils, "PROGRESS_THROTTLE_MIN_INTERVAL"):
        # form changed for hosts >= 0.9.2: they throttle updates (100 ms / 0.5 %) but always send the
        # first and the final one, so the bar must still start at 1, only rise, and end at the total
        assert values[0] == 1 and values[-1] == total and values == sorted(set(values))
    else:
        assert values == list(range(1, total + 1))
    assert all(t == total for _, t in seen)
