"""What changed in the host between 0.3.75 and 0.33 and touches the pack (nodes/host_mirror.py):
LATENT shape hints, MultiGPU CFG Split clones, post-CFG-hook samplers by behaviour, the helpers'
non-dynamic delegate. Every test runs on each host of the matrix (scripts/test.sh AMDM_HOST=all)."""
import pytest
import torch


def window(amdm):
    return amdm.aggregation(window_unit="steps", window_start=1, window_end=2)


def test_latent_hints_follow_the_stock_ksampler(amdm, comfy, model_a, model_b, make_cond, empty_latent,
                                                stock_ksampler):
    """0.33's EmptyLatentImage adds downscale_ratio_spacial; the stock KSampler hands it to
    fix_empty_latent_channels and drops it from its output. With the helper at weight 0 the pack must
    give the same LATENT (keys and samples) on every host, also for a hint the host has to act on."""
    pos, neg = make_cond(1), make_cond(0.0)
    for hint in (None, 8, 16):
        latent = empty_latent()
        latent.pop("downscale_ratio_spacial", None)
        if hint is not None:
            latent["downscale_ratio_spacial"] = hint
        stock = stock_ksampler(model_a, pos, neg, latent)
        ours = amdm.sample(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.0), latent)[0]
        assert set(ours) == set(stock), hint        # 0.33 drops the hint, 0.3.75 passes it through
        assert ours["samples"].shape == stock["samples"].shape, hint
        assert torch.equal(ours["samples"], stock["samples"]), hint
        assert latent.get("downscale_ratio_spacial") == hint          # the input LATENT is untouched


def _with_multigpu_clones(model):
    """What comfy/multigpu.py's create_multigpu_deepclones leaves on a MODEL (additional models under
    'multigpu' that are base clones), built with the ModelPatcher's own API: CPU CI has one device."""
    m = model.clone()
    extra = model.clone()
    extra.is_multigpu_base_clone = True
    m.set_additional_models("multigpu", [extra])
    return m


@pytest.mark.parametrize("who", ["base", "helper"])
def test_multigpu_members_are_refused_before_loading(amdm, comfy, model_a, model_b, make_cond, empty_latent,
                                                     record_load_models_gpu, who):
    pos, neg = make_cond(1), make_cond(0.0)
    base = _with_multigpu_clones(model_a) if who == "base" else model_a
    helper = _with_multigpu_clones(model_b) if who == "helper" else model_b
    label = "base member" if who == "base" else "member 2"
    with pytest.raises(ValueError, match=rf"{label}.*MultiGPU CFG Split.*Remove"):
        amdm.sample(base, pos, neg, amdm.chain(helper, make_cond(2), neg, weight=0.866), empty_latent(),
                    steps=4, base_weight=0.5, aggregation=window(amdm))
    assert record_load_models_gpu.calls == []


def _hooking_sampler(comfy):
    """A sampler that behaves like CFG++ (reads the unconditional prediction through a post-CFG hook)
    under a name with no 'cfg_pp' in it, as cfgpp_ud10_ab does after 0.33."""
    def sample_renamed_guidance(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = dict(extra_args or {})
        seen = {}

        def keep(args):
            seen["uncond"] = args["uncond_denoised"]
            return args["denoised"]
        extra_args["model_options"] = comfy.model_patcher.set_model_options_post_cfg_function(
            dict(extra_args.get("model_options", {})), keep, disable_cfg1_optimization=True)
        return comfy.k_diffusion.sample_euler(model, x, sigmas, extra_args=extra_args, callback=callback,
                                              disable=disable)
    return comfy.samplers.KSAMPLER(sample_renamed_guidance)


def _guider_sample(comfy, guider, sampler, steps=4, seed=3):
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    sigmas = comfy.samplers.calculate_sigmas(guider.model_patcher.get_model_object("model_sampling"), "normal", steps)
    with torch.inference_mode():
        return guider.sample(noise, latent, sampler, sigmas, seed=seed)


@pytest.mark.parametrize("mode", ["amdm", "compose"])
def test_post_cfg_hook_sampler_is_refused_inside_the_window_by_behaviour(amdm, comfy, model_a, model_b,
                                                                         make_cond, mode):
    pos, neg = make_cond(1), make_cond(0.0)
    agg = window(amdm) if mode == "amdm" else amdm.compose(mode="composable")
    guider = amdm.guider(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.866), base_weight=0.5,
                         aggregation=agg)
    with pytest.raises(ValueError, match=r"sampler 'sample_renamed_guidance' installed a post-CFG hook"):
        _guider_sample(comfy, guider, _hooking_sampler(comfy))


def test_post_cfg_hook_sampler_runs_where_only_the_base_is_evaluated(amdm, comfy, model_a, model_b, make_cond):
    """Outside the window a CFG++-like sampler is the base model's own business: same result as the
    stock CFGGuider with that sampler."""
    pos, neg = make_cond(1), make_cond(0.0)
    guider = amdm.guider(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.0))
    ours = _guider_sample(comfy, guider, _hooking_sampler(comfy))
    stock = comfy.samplers.CFGGuider(model_a)
    stock.set_conds(pos, neg)
    stock.set_cfg(2.0)
    assert torch.equal(ours, _guider_sample(comfy, stock, _hooking_sampler(comfy)))


def test_cfg_pp_refusal_names_the_sampler_the_user_picked(amdm, model_a, model_b, make_cond, empty_latent,
                                                          record_load_models_gpu):
    pos, neg = make_cond(1), make_cond(0.0)
    with pytest.raises(ValueError, match=r"sampler 'euler_cfg_pp' is a CFG\+\+ sampler") as e:
        amdm.sample(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.866), empty_latent(),
                    sampler_name="euler_cfg_pp", base_weight=0.5, aggregation=window(amdm))
    assert "sample_euler_cfg_pp" not in str(e.value)
    assert record_load_models_gpu.calls == []


def test_helpers_set_conds_through_the_hosts_own_inner_set_conds(amdm, comfy, model_a, model_b, make_cond,
                                                                 monkeypatch):
    """0.33's CFGGuider.inner_set_conds swaps a dynamic patcher for its non-dynamic delegate when a
    cond has hooks; helpers get that only if their conds go through the host's method. Recorded on
    every host (CPU patchers are never dynamic, so the swap itself cannot happen here)."""
    seen = []
    real = comfy.samplers.CFGGuider.inner_set_conds

    def recording(self, conds):
        seen.append(self.model_patcher)
        return real(self, conds)
    monkeypatch.setattr(comfy.samplers.CFGGuider, "inner_set_conds", recording)
    pos, neg = make_cond(1), make_cond(0.0)
    guider = amdm.guider(model_a, pos, neg, amdm.chain(model_b, make_cond(2), neg, weight=0.866), base_weight=0.5,
                         aggregation=window(amdm))
    assert any(p.is_clone(model_b) for p in seen) and any(p.is_clone(model_a) for p in seen)
    assert [g.model_patcher for g in guider.subs] == [p for p in seen if p.is_clone(model_b)]


def test_labels_name_the_node_by_its_own_title(pack):
    """Hidden PROMPT carries the canvas title (_meta.title); only a title of the user's own is used."""
    members = pack.nodes.members
    hidden = type("Hidden", (), {"unique_id": "8", "prompt": {"8": {"_meta": {"title": "Style helper"}}}})()
    assert members.member_label(1, members.node_ref(hidden, "Multi-Model Member")) == 'member 2 "Style helper" (node #8)'
    default = type("Hidden", (), {"unique_id": "8", "prompt": {"8": {"_meta": {"title": "Multi-Model Member"}}}})()
    assert members.member_label(1, members.node_ref(default, "Multi-Model Member")) == "member 2 (node #8)"
    assert members.member_label(0, members.node_ref(None, "Multi-Model Sampler")) == "base member"
    assert members.member_label(0, "20") == "base member (node #20)"
