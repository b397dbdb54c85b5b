"""Today's flow families beyond SD3, through the stock UNETLoader: a Flux-type guidance-distilled DiT
(cfg 1, FluxGuidance conditioning, one evaluation per step) and Wan-type video DiTs with 5-D latents
(Wan 2.2's high-noise and low-noise experts), in AMDM, Compose Predictions and handoff.

The models come from devtools/flow_models.py. On ComfyUI 0.3.75 the Flux file is 3072 wide (that
host's detection fixes 24 heads of 128), so the Flux runs there are few and short.
"""
import json

import pytest
import torch

from devtools import flow_models as fm


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def flow_files(tiny_models):
    return fm.make_flow_models(tiny_models.models_dir)


@pytest.fixture(scope="module")
def flux(comfy, flow_files, load_unet):
    """flux() -> a clone of the tiny Flux; flux(shift) -> the file loaded again, through the stock
    ModelSamplingFlux node with that max_shift (its own model object, as object patches are shared)."""
    import comfy_extras.nodes_model_advanced as adv
    second = {}

    def _load(shift=None):
        if shift is None:
            return load_unet(fm.FLUX_FILE)
        if shift not in second:
            second[shift] = comfy.nodes.UNETLoader().load_unet(fm.FLUX_FILE, "default")[0]
        return adv.ModelSamplingFlux().patch(second[shift], float(shift), 0.5, 64, 64)[0]
    return _load


@pytest.fixture(scope="module")
def wan(flow_files, load_unet):
    return lambda kind: load_unet(fm.WAN_FILES[kind])


@pytest.fixture
def flux_cond(make_cond):
    """make_cond through the stock FluxGuidance node (what a Flux workflow feeds a sampler)."""
    import comfy_extras.nodes_flux as nf

    def _make(seed, guidance=3.5):
        out = nf.FluxGuidance.execute(make_cond(seed), guidance)
        return out.args[0] if hasattr(out, "args") else out[0]
    return _make


def flux_latent():
    return {"samples": torch.zeros(1, 16, 4, 4)}


def video_latent(frames=2, size=4):
    """What EmptyHunyuanLatentVideo gives for a Wan run: [B, 16, T, H, W]."""
    return {"samples": torch.zeros(1, 16, frames, size, size)}


def summary(ui):
    return json.loads(ui["amdm_summary"][0])


# --- Flux-type: guidance distilled ---------------------------------------------------------------------

def test_flux_members_read_as_flow_with_a_guidance_embedder(amdm, flux):
    m = flux()
    assert type(m.model).__name__ == "Flux" and m.model.diffusion_model.params.guidance_embed
    assert amdm.nodes.members.sampling_family(m.get_model_object("model_sampling")) == "flow"
    assert amdm.nodes.members.sampling_family(flux(shift=3.0).get_model_object("model_sampling")) == "flow"


@pytest.mark.parametrize("sampler_name, scheduler", [("euler", "simple"), ("dpmpp_2m", "beta")])
def test_flux_helper_weight_zero_equals_stock_ksampler(amdm, flux, flux_cond, make_cond, stock_ksampler,
                                                       sampler_name, scheduler):
    base, pos, neg = flux(), flux_cond(1), make_cond(0.0)
    chain = amdm.chain(flux(shift=3.0), flux_cond(2), neg, cfg=1.0, weight=0.0)
    got = amdm.sample(base, pos, neg, chain, flux_latent(), steps=4, cfg=1.0, sampler_name=sampler_name,
                      scheduler=scheduler, aggregation=amdm.aggregation(window_unit="steps", window_start=1,
                                                                          window_end=2))[0]
    want = stock_ksampler(base, pos, neg, flux_latent(), steps=4, cfg=1.0, sampler_name=sampler_name,
                          scheduler=scheduler)
    assert torch.equal(got["samples"], want["samples"])


def test_flux_amdm_costs_one_evaluation_per_member_step_at_cfg_1(amdm, flux, flux_cond, make_cond,
                                                                  stock_ksampler):
    base, helper, neg = flux(), flux(shift=3.0), make_cond(0.0)
    calls = []
    for m in (base, helper):
        m.set_model_unet_function_wrapper(lambda apply, args: calls.append(args["input"].shape[0]) or
                                          apply(args["input"], args["timestep"], **args["c"]))
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    got, _, ui = amdm.sample(base, flux_cond(1), neg, amdm.chain(helper, flux_cond(2), neg, cfg=1.0, weight=0.866),
                             flux_latent(), steps=4, cfg=1.0, base_weight=0.5, aggregation=agg)
    s = summary(ui)
    assert [m["evaluations"] for m in s["members"]] == [4, 3]
    # cfg 1 skips the negative: one batch-1 model call per member step
    assert calls == [1] * 7
    alone = stock_ksampler(flux(), flux_cond(1), neg, flux_latent(), steps=4, cfg=1.0)
    assert torch.isfinite(got["samples"]).all() and rel_err(got["samples"], alone["samples"]) > 1e-3
    assert 0.8 < s["norm_ratio"][0] < 1.25


def test_flux_guidance_of_each_member_reaches_its_model(amdm, flux, flux_cond, make_cond):
    """The helper's FluxGuidance value is its own: changing it changes an AMDM run."""
    neg = make_cond(0.0)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    runs = [amdm.sample(flux(), flux_cond(1), neg, amdm.chain(flux(shift=3.0), flux_cond(2, guidance=g), neg,
                                                              cfg=1.0, weight=0.866),
                        flux_latent(), steps=3, cfg=1.0, base_weight=0.5, aggregation=agg)[0]["samples"]
            for g in (1.5, 6.0)]
    assert rel_err(runs[0], runs[1]) > 1e-4


def test_flux_handoff_and_composition(amdm, comfy, flux, flux_cond, make_cond, stock_ksampler):
    steps, m = 4, 2
    high, low, neg = flux(), flux(), make_cond(0.0)
    sigmas = comfy.samplers.calculate_sigmas(high.get_model_object("model_sampling"), "simple", steps)
    cut = float(sigmas[m])
    chain = amdm.chain(low, flux_cond(2), neg, cfg=1.0, weight=1.0, range_start=cut, range_end=0.0,
                       range_unit="sigma")
    got, text, ui = amdm.sample(high, flux_cond(1), neg, chain, flux_latent(), steps=steps, cfg=1.0,
                                scheduler="simple", aggregation=amdm.compose(), base_range=(1e4, cut, "sigma"))
    with torch.inference_mode():
        first = comfy.nodes.KSamplerAdvanced().sample(high, "enable", 42, steps, 1.0, "euler", "simple",
                                                      flux_cond(1), neg, flux_latent(), 0, m, "enable")[0]
        want = comfy.nodes.KSamplerAdvanced().sample(low, "disable", 42, steps, 1.0, "euler", "simple",
                                                     flux_cond(2), neg, first, m, 10000, "disable")[0]
    assert rel_err(got["samples"], want["samples"]) < 1e-5 and "handoff" in text
    mixed, _, ui = amdm.sample(flux(), flux_cond(1), neg, amdm.chain(flux(shift=3.0), flux_cond(2), neg, cfg=1.0,
                                                                     weight=1.0),
                               flux_latent(), steps=3, cfg=1.0, aggregation=amdm.compose(mode="average"))
    assert [mm["evaluations"] for mm in summary(ui)["members"]] == [3, 3]
    alone = stock_ksampler(flux(), flux_cond(1), neg, flux_latent(), steps=3, cfg=1.0)
    assert rel_err(mixed["samples"], alone["samples"]) > 1e-3


# --- Wan-type video: 5-D latents ---------------------------------------------------------------------------

@pytest.mark.parametrize("sampler_name, scheduler", [("euler", "simple"), ("dpmpp_2m", "beta"),
                                                     ("res_multistep", "normal"), ("uni_pc", "simple")])
def test_wan_helper_weight_zero_equals_stock_ksampler(amdm, wan, stock_ksampler, sampler_name, scheduler):
    base, pos, neg = wan("wan_low"), fm.wan_conditioning(1), fm.wan_conditioning(2)
    chain = amdm.chain(wan("wan_high"), fm.wan_conditioning(3), neg, weight=0.0)
    got = amdm.sample(base, pos, neg, chain, video_latent(), steps=5, sampler_name=sampler_name, scheduler=scheduler,
                      aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=3))[0]
    want = stock_ksampler(base, pos, neg, video_latent(), steps=5, sampler_name=sampler_name, scheduler=scheduler)
    assert got["samples"].shape == (1, 16, 2, 4, 4) and torch.equal(got["samples"], want["samples"])


def test_wan_amdm_aggregates_video_latents_per_sample(amdm, wan, stock_ksampler):
    neg = fm.wan_conditioning(2)
    latent = {"samples": torch.zeros(2, 16, 3, 4, 4)}     # batch 2: norms are per sample over C, T, H, W
    got, _, ui = amdm.sample(wan("wan_low"), fm.wan_conditioning(1), neg,
                             amdm.chain(wan("wan_high"), fm.wan_conditioning(3), neg, weight=0.866), latent,
                             steps=5, base_weight=0.5,
                             aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=2),
                             deviation=amdm.deviation(step=0.05))
    s = summary(ui)
    assert [m["evaluations"] for m in s["members"]] == [5, 3] and got["samples"].shape == (2, 16, 3, 4, 4)
    alone = stock_ksampler(wan("wan_low"), fm.wan_conditioning(1), neg, {"samples": torch.zeros(2, 16, 3, 4, 4)},
                           steps=5)
    assert torch.isfinite(got["samples"]).all() and rel_err(got["samples"], alone["samples"]) > 1e-3
    assert 0.8 < s["norm_ratio"][0] < 1.25


def test_wan_composition_runs_on_video(amdm, wan, stock_ksampler):
    neg = fm.wan_conditioning(2)
    got, _, ui = amdm.sample(wan("wan_low"), fm.wan_conditioning(1), neg,
                             amdm.chain(wan("wan_high"), fm.wan_conditioning(3), neg, weight=1.0), video_latent(),
                             steps=4, aggregation=amdm.compose(mode="composable"))
    assert [m["evaluations"] for m in summary(ui)["members"]] == [4, 4]
    alone = stock_ksampler(wan("wan_low"), fm.wan_conditioning(1), neg, video_latent(), steps=4)
    assert rel_err(got["samples"], alone["samples"]) > 1e-3


WAN22_T2V_BOUNDARY = 0.875      # Wan 2.2's official switch from the high-noise to the low-noise expert


def wan22_handoff(amdm, wan, high, low, steps, sampler_name, pos, neg, seed=7):
    """The Wan 2.2 workflow's one pass: the low-noise expert is the base (it finishes), the high-noise
    expert a member active above the boundary; cfg 3.5 each, as the official workflow."""
    chain = amdm.chain(high, pos, neg, cfg=3.5, weight=1.0, range_start=1e4, range_end=WAN22_T2V_BOUNDARY,
                       range_unit="sigma")
    return amdm.sample(low, pos, neg, chain, video_latent(), seed=seed, steps=steps, cfg=3.5,
                       sampler_name=sampler_name, scheduler="simple", aggregation=amdm.compose(),
                       base_range=(WAN22_T2V_BOUNDARY, 0.0, "sigma"))


def ksampler_advanced_chain(comfy, high, low, steps, switch, sampler_name, pos, neg, seed=7):
    """What people run today: two chained KSamplerAdvanced, the first with leftover noise."""
    with torch.inference_mode():
        first = comfy.nodes.KSamplerAdvanced().sample(high, "enable", seed, steps, 3.5, sampler_name, "simple", pos,
                                                      neg, video_latent(), 0, switch, "enable")[0]
        return comfy.nodes.KSamplerAdvanced().sample(low, "disable", seed, steps, 3.5, sampler_name, "simple", pos,
                                                     neg, first, switch, 10000, "disable")[0]


def test_wan22_expert_handoff_equals_the_chained_ksampleradvanced_for_euler(amdm, comfy, wan):
    steps = 12
    high, low = wan("wan_high"), wan("wan_low")
    sigmas = comfy.samplers.calculate_sigmas(low.get_model_object("model_sampling"), "simple", steps)
    # the chain's switch step: the first step that starts at or below the boundary
    switch = next(j for j, s in enumerate(sigmas.tolist()) if s <= WAN22_T2V_BOUNDARY)
    assert 0 < switch < steps
    pos, neg = fm.wan_conditioning(1), fm.wan_conditioning(2)
    got, text, ui = wan22_handoff(amdm, wan, high, low, steps, "euler", pos, neg)
    want = ksampler_advanced_chain(comfy, wan("wan_high"), wan("wan_low"), steps, switch, "euler", pos, neg)
    assert rel_err(got["samples"], want["samples"]) < 1e-5
    assert [m["evaluations"] for m in summary(ui)["members"]] == [steps - switch, switch] and "handoff" in text


def test_wan22_one_pass_keeps_the_multistep_history(amdm, comfy, wan, stock_ksampler):
    """With one expert file in both roles, the one-pass handoff is one run of that model: a multistep
    sampler's history crosses the boundary (equal to the stock KSampler), which the two-sampler chain
    cannot do (it restarts dpmpp_2m's history at the switch)."""
    steps = 10
    pos, neg = fm.wan_conditioning(1), fm.wan_conditioning(2)
    got = wan22_handoff(amdm, wan, wan("wan_low"), wan("wan_low"), steps, "dpmpp_2m", pos, neg)[0]
    want = stock_ksampler(wan("wan_low"), pos, neg, video_latent(), seed=7, steps=steps, cfg=3.5,
                          sampler_name="dpmpp_2m", scheduler="simple")
    assert torch.equal(got["samples"], want["samples"])
    sigmas = comfy.samplers.calculate_sigmas(wan("wan_low").get_model_object("model_sampling"), "simple", steps)
    switch = next(j for j, s in enumerate(sigmas.tolist()) if s <= WAN22_T2V_BOUNDARY)
    chained = ksampler_advanced_chain(comfy, wan("wan_low"), wan("wan_low"), steps, switch, "dpmpp_2m", pos, neg)
    assert rel_err(chained["samples"], want["samples"]) > 1e-6


def test_video_and_image_members_are_refused_by_name_before_loading(amdm, wan, flux, flux_cond, make_cond,
                                                                     record_load_models_gpu):
    neg = fm.wan_conditioning(2)
    with pytest.raises(ValueError, match=r"member 2.*Flux latent.*base member.*Wan21 latent.*one family"):
        amdm.sample(wan("wan_low"), fm.wan_conditioning(1), neg,
                    amdm.chain(flux(), flux_cond(1), make_cond(0.0), weight=0.5), video_latent(), steps=3,
                    aggregation=amdm.compose())
    with pytest.raises(ValueError, match=r"'latent_image' has 5 dimensions.*base model expects"):
        amdm.sample(flux(), flux_cond(1), make_cond(0.0), amdm.chain(flux(), flux_cond(2), make_cond(0.0),
                                                                     weight=0.5),
                    video_latent(), steps=3, cfg=1.0, aggregation=amdm.compose())
    assert record_load_models_gpu.calls == []
