"""Flow-matching members (SD3-type MMDiT, stock UNETLoader) in all three modes: AMDM in flow units,
Compose Predictions, and the one-pass handoff; parity with the stock KSampler; refusals.

Two different members come from one tiny SD3-type file loaded twice with different shifts (the
stock ModelSamplingSD3 node) and different conditioning: each member maps sigma to its own timestep.
"""
import json

import pytest
import torch

from devtools import reliability_models as rm


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def sd3(comfy, tiny_models, load_unet):
    """sd3() -> a clone of the tiny SD3-type model; sd3(shift) -> the file loaded a second time (its own
    model object: ModelSampling patches live on the model, so clones of one load cannot differ in them)
    through the stock ModelSamplingSD3 node."""
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


@pytest.fixture
def flow_latent(comfy):
    def _make(size=32):
        return {"samples": torch.zeros(1, 16, size // 8, size // 8)}
    return _make


def test_the_pack_reads_flow_members_as_flow(amdm, sd3):
    members = amdm.nodes.members
    units = members.state_units(sd3().get_model_object("model_sampling"))
    assert units.family == "flow" and not units.discrete
    assert members.sampling_family(sd3(shift=6.0).get_model_object("model_sampling")) == "flow"


@pytest.mark.parametrize("sampler_name, scheduler", [("euler", "simple"), ("dpmpp_2m", "beta"),
                                                     ("res_multistep", "normal"), ("uni_pc", "karras")])
def test_helper_weight_zero_equals_stock_ksampler(amdm, sd3, make_cond, flow_latent, stock_ksampler,
                                                  sampler_name, scheduler):
    base, pos, neg = sd3(), make_cond(1), make_cond(0.0)
    chain = amdm.chain(sd3(shift=6.0), make_cond(2), neg, weight=0.0)
    got = amdm.sample(base, pos, neg, chain, flow_latent(), steps=5, sampler_name=sampler_name, scheduler=scheduler,
                      aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=3))[0]
    want = stock_ksampler(base, pos, neg, flow_latent(), steps=5, sampler_name=sampler_name, scheduler=scheduler)
    assert torch.equal(got["samples"], want["samples"])


def test_amdm_with_flow_members_aggregates_in_flow_units(amdm, sd3, make_cond, flow_latent, stock_ksampler):
    base, helper, pos, neg = sd3(), sd3(shift=6.0), make_cond(1), make_cond(0.0)
    agg = amdm.aggregation(window_unit="steps", window_start=1, window_end=2)
    got, text, ui = amdm.sample(base, pos, neg, amdm.chain(helper, make_cond(2), neg, weight=0.866), flow_latent(),
                                steps=6, base_weight=0.5, aggregation=agg)
    alone = stock_ksampler(base, pos, neg, flow_latent(), steps=6)
    s = json.loads(ui["amdm_summary"][0])
    assert s["window_steps"] == [1, 2] and [m["evaluations"] for m in s["members"]] == [6, 3]
    assert torch.isfinite(got["samples"]).all() and rel_err(got["samples"], alone["samples"]) > 1e-3
    # spherical weights keep the norm of independent members: the first aggregate's VP norm over the
    # base's is near 1 in flow units (eps units would read other numbers at flow sigmas near 1)
    assert 0.8 < s["norm_ratio"][0] < 1.25


def test_flow_units_reach_the_core_loop(amdm, sd3, make_cond, flow_latent, monkeypatch):
    """The guider hands the core the base model's units (not the eps default)."""
    seen = []
    loop = amdm.pack.nodes.guider
    real = loop.amdm_sample

    def recording(*args, **kwargs):
        seen.append(kwargs.get("units"))
        return real(*args, **kwargs)
    monkeypatch.setattr(loop, "amdm_sample", recording)
    neg = make_cond(0.0)
    amdm.sample(sd3(), make_cond(1), neg, amdm.chain(sd3(shift=6.0), make_cond(2), neg, weight=0.866), flow_latent(),
                steps=4, base_weight=0.5, aggregation=amdm.aggregation(window_unit="steps", window_start=1,
                                                                       window_end=1))
    assert [u.family for u in seen] == ["flow"]


def test_handoff_of_flow_members_equals_the_ksampleradvanced_chain(amdm, comfy, sd3, make_cond, flow_latent):
    """Both experts on one schedule (the model's own shift 3), as Wan 2.2's are: the chain's second
    KSamplerAdvanced computes its sigmas from its own model, so only then is the chain a reference."""
    steps, m, seed = 8, 3, 11
    high, low, pos_a, pos_b, neg = sd3(), sd3(shift=3.0), make_cond(1), make_cond(2), make_cond(0.0)
    sigmas = comfy.samplers.calculate_sigmas(high.get_model_object("model_sampling"), "simple", steps)
    cut = float(sigmas[m])
    chain = amdm.chain(low, pos_b, neg, cfg=2.0, weight=1.0, range_start=cut, range_end=0.0, range_unit="sigma")
    got, text, ui = amdm.sample(high, pos_a, neg, chain, flow_latent(), seed=seed, steps=steps, scheduler="simple",
                                aggregation=amdm.compose(), base_range=(1e4, cut, "sigma"))
    with torch.inference_mode():
        first = comfy.nodes.KSamplerAdvanced().sample(high, "enable", seed, steps, 2.0, "euler", "simple", pos_a, neg,
                                                      flow_latent(), 0, m, "enable")[0]
        want = comfy.nodes.KSamplerAdvanced().sample(low, "disable", seed, steps, 2.0, "euler", "simple", pos_b, neg,
                                                     first, m, 10000, "disable")[0]
    assert rel_err(got["samples"], want["samples"]) < 1e-5
    assert [mm["evaluations"] for mm in json.loads(ui["amdm_summary"][0])["members"]] == [m, steps - m]
    assert "handoff" in text


def test_composition_of_flow_members_runs_and_mixes(amdm, sd3, make_cond, flow_latent, stock_ksampler):
    base, pos, neg = sd3(), make_cond(1), make_cond(0.0)
    got, _, ui = amdm.sample(base, pos, neg, amdm.chain(sd3(shift=6.0), make_cond(2), neg, weight=1.0), flow_latent(),
                             steps=4, aggregation=amdm.compose(mode="average"))
    assert [mm["evaluations"] for mm in json.loads(ui["amdm_summary"][0])["members"]] == [4, 4]
    assert rel_err(got["samples"], stock_ksampler(base, pos, neg, flow_latent(), steps=4)["samples"]) > 1e-3


def test_reference_target_is_refused_for_flow_before_loading(amdm, sd3, make_cond, flow_latent,
                                                              record_load_models_gpu):
    neg = make_cond(0.0)
    with pytest.raises(ValueError, match=r"target 'reference'.*base member is a flow model.*'faithful'"):
        amdm.sample(sd3(), make_cond(1), neg, amdm.chain(sd3(), make_cond(2), neg, weight=0.866), flow_latent(),
                    steps=4, base_weight=0.5, deviation=amdm.deviation(target="reference"),
                    aggregation=amdm.aggregation(window_unit="steps", window_start=1, window_end=2))
    assert record_load_models_gpu.calls == []
