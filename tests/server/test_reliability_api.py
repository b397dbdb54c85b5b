"""Reliability over HTTP: bad inputs through POST /prompt, faults, caching, restart determinism.

A real ComfyUI 0.3.75 server (the session's comfy_server) gets the bad-input matrix: ComfyUI's own
prompt validation answers HTTP 400 with node_errors for type and range problems of V1-style widgets
(INT/FLOAT bounds, link types, missing inputs); everything else reaches the pack and must end as an
execution_error whose exception_message names the node input or member. Note: ComfyUI 0.3.75 does
NOT validate the options of V3 Combo inputs (sampler_name, scheduler, mode, ...), and a FLOAT NaN
passes its min/max checks, so those reach the nodes and the pack must refuse them itself.

After every bad prompt the server must answer the next prompt normally, bit for bit.

Faults: interrupts in and after the window (POST /interrupt during the run), POST /free between
prompts (models evicted, caches dropped), a changed weight (re-executed) vs an unchanged prompt
(may be cached), and, on a second server of this module with a fault-injection node pack, an
exception inside a member's forward and an interrupt pressed from inside it. That second server is
also restarted: the same prompt gives the same latent sha256 on the shared server (after all the
faults), on the fresh second server, and after its restart.
"""
from __future__ import annotations

import json
import re
import time
import zlib

import pytest

import harness
from harness import PromptRejected, node

NAN, INF = float("nan"), float("inf")
MISSING = object()

from devtools import reliability_models as rm  # noqa: E402
SDXL, SD3 = rm.SDXL_UNET_FILE, rm.SD3_DIT_FILE


@pytest.fixture(scope="module")
def rel_models(tiny_model_set):
    """The SDXL-type and SD3-type models, written next to the tiny SD1.5 models (the servers list
    models/unet on every prompt, so files added after start-up are seen)."""
    return rm.make_reliability_models(tiny_model_set.models_dir)


# -- prompts ---------------------------------------------------------------------------------------

BASE_POS, NEG, HELPER_POS, LATENT = "3", "4", "5", "6"
MEMBER, AGG, DEV, SAMPLER, STATS = "10", "11", "12", "20", "30"


def amdm_prompt(route="sampler", *, seed=5, steps=4, window=(1, 2), weight=0.866, base_weight=0.5,
                base_unet=harness.UNET_A, helper_unet=harness.UNET_B, sampler_name="euler"):
    """UNETLoader a (base) + b (helper) -> Multi-Model Member -> Multi-Model Sampler (or Guider +
    SamplerCustomAdvanced, or Sweep) with a Spherical Aggregate window in steps; node 30 reports the
    latent's sha256."""
    g = {
        "1": node("UNETLoader", unet_name=base_unet, weight_dtype="default"),
        "2": node("UNETLoader", unet_name=helper_unet, weight_dtype="default"),
        BASE_POS: node("AMDMTest_Conditioning", seed=1, scale=1.0),
        NEG: node("AMDMTest_Conditioning", seed=0, scale=0.0),
        HELPER_POS: node("AMDMTest_Conditioning", seed=2, scale=1.0),
        LATENT: node("EmptyLatentImage", width=64, height=64, batch_size=1),
        MEMBER: node("AMDM_Member", model=["2", 0], positive=[HELPER_POS, 0], negative=[NEG, 0], cfg=2.0,
                     weight=weight),
        AGG: node("AMDM_SphericalAggregate", mode="spherical", window_unit="steps", window_start=window[0],
                  window_end=window[1], initial_noise="independent", step_noise="independent",
                  normalize_weights=True),
        DEV: node("AMDM_DeviationOptimize", step=0.35, mode="absolute", target="faithful", members="base",
                  helper_step=0.35),
    }
    base = dict(model=["1", 0], positive=[BASE_POS, 0], negative=[NEG, 0], members=[MEMBER, 0],
                aggregation=[AGG, 0], deviation=[DEV, 0])
    if route == "sampler":
        g[SAMPLER] = node("AMDM_MultiModelSampler", latent_image=[LATENT, 0], seed=seed, steps=steps, cfg=2.0,
                          sampler_name=sampler_name, scheduler="normal", denoise=1.0, base_weight=base_weight, **base)
        g[STATS] = node("AMDMTest_LatentStats", samples=[SAMPLER, 0])
    elif route == "guider":
        g[SAMPLER] = node("AMDM_MultiModelGuider", cfg=2.0, base_weight=base_weight, **base)
        g["21"] = node("RandomNoise", noise_seed=seed)
        g["22"] = node("KSamplerSelect", sampler_name=sampler_name)
        g["23"] = node("BasicScheduler", model=["1", 0], scheduler="normal", steps=steps, denoise=1.0)
        g["24"] = node("SamplerCustomAdvanced", noise=["21", 0], guider=[SAMPLER, 0], sampler=["22", 0],
                       sigmas=["23", 0], latent_image=[LATENT, 0])
        g[STATS] = node("AMDMTest_LatentStats", samples=["24", 0])
    elif route == "compose":
        g[AGG] = node("AMDM_ComposePredictions", mode="composable", window_unit="steps", window_start=0,
                      window_end=window[1])
        g[SAMPLER] = node("AMDM_MultiModelSampler", latent_image=[LATENT, 0], seed=seed, steps=steps, cfg=2.0,
                          sampler_name=sampler_name, scheduler="normal", denoise=1.0, base_weight=base_weight, **base)
        g[STATS] = node("AMDMTest_LatentStats", samples=[SAMPLER, 0])
    elif route == "sweep":
        g["8"] = node("VAELoader", vae_name=harness.TINY_VAE)
        g[SAMPLER] = node("AMDM_MultiModelSweep", latent_image=[LATENT, 0], vae=["8", 0], seed=seed, steps=steps,
                          cfg=2.0, sampler_name=sampler_name, scheduler="normal", denoise=1.0,
                          base_weight=base_weight, parameter="window_end", values="1, 2", parameter_2="none",
                          values_2="", **base)
        g[STATS] = node("AMDMTest_LatentStats", samples=[SAMPLER, 2])
    return g


def with_inputs(g, changes):
    """changes: {(node_id, input): value} (MISSING deletes the input); {node_id: node dict} adds nodes."""
    for key, value in changes.items():
        if isinstance(key, tuple):
            nid, name = key
            if value is MISSING:
                g[nid]["inputs"].pop(name, None)
            else:
                g[nid]["inputs"][name] = value
        else:
            g[key] = value
    return g


def sha(result) -> str:
    return result.ui(STATS)["sha256"][0]


@pytest.fixture(scope="module")
def baseline(comfy_server):
    """sha256 of the default AMDM prompt on the shared server before any bad prompt."""
    return sha(comfy_server.run(amdm_prompt()))


# -- 1. ComfyUI's prompt validation: HTTP 400 with node_errors naming the input -----------------------

REJECTED = [
    # (route, {(node, input): value}, node with the error, error type, input named)
    ("sampler", {(SAMPLER, "steps"): 0}, SAMPLER, "value_smaller_than_min", "steps"),
    ("sampler", {(SAMPLER, "steps"): "many"}, SAMPLER, "invalid_input_type", "steps"),
    ("sampler", {(SAMPLER, "seed"): -1}, SAMPLER, "value_smaller_than_min", "seed"),
    ("sampler", {(SAMPLER, "seed"): 2 ** 64}, SAMPLER, "value_bigger_than_max", "seed"),
    ("sampler", {(SAMPLER, "cfg"): "seven"}, SAMPLER, "invalid_input_type", "cfg"),
    ("sampler", {(SAMPLER, "cfg"): -1.0}, SAMPLER, "value_smaller_than_min", "cfg"),
    ("sampler", {(SAMPLER, "cfg"): INF}, SAMPLER, "value_bigger_than_max", "cfg"),
    ("sampler", {(SAMPLER, "denoise"): 1.5}, SAMPLER, "value_bigger_than_max", "denoise"),
    ("sampler", {(SAMPLER, "denoise"): -0.1}, SAMPLER, "value_smaller_than_min", "denoise"),
    ("sampler", {(SAMPLER, "base_weight"): -1.0}, SAMPLER, "value_smaller_than_min", "base_weight"),
    ("sampler", {(SAMPLER, "base_weight"): -INF}, SAMPLER, "value_smaller_than_min", "base_weight"),
    ("sampler", {(SAMPLER, "base_range_start"): -0.5}, SAMPLER, "value_smaller_than_min", "base_range_start"),
    ("sampler", {(SAMPLER, "model"): [BASE_POS, 0]}, SAMPLER, "return_type_mismatch", "model"),
    ("sampler", {(SAMPLER, "positive"): ["1", 0]}, SAMPLER, "return_type_mismatch", "positive"),
    ("sampler", {(SAMPLER, "negative"): MISSING}, SAMPLER, "required_input_missing", "negative"),
    ("sampler", {(SAMPLER, "members"): MISSING}, SAMPLER, "required_input_missing", "members"),
    ("sampler", {(SAMPLER, "members"): ["2", 0]}, SAMPLER, "return_type_mismatch", "members"),
    ("sampler", {(SAMPLER, "latent_image"): [BASE_POS, 0]}, SAMPLER, "return_type_mismatch", "latent_image"),
    ("sampler", {(SAMPLER, "aggregation"): [DEV, 0]}, SAMPLER, "return_type_mismatch", "aggregation"),
    ("sampler", {(SAMPLER, "deviation"): [AGG, 0]}, SAMPLER, "return_type_mismatch", "deviation"),
    ("sampler", {(MEMBER, "model"): MISSING}, MEMBER, "required_input_missing", "model"),
    ("sampler", {(MEMBER, "positive"): [LATENT, 0]}, MEMBER, "return_type_mismatch", "positive"),
    ("sampler", {(MEMBER, "weight"): -0.5}, MEMBER, "value_smaller_than_min", "weight"),
    ("sampler", {(MEMBER, "weight"): INF}, MEMBER, "value_bigger_than_max", "weight"),
    ("sampler", {(MEMBER, "weight"): "heavy"}, MEMBER, "invalid_input_type", "weight"),
    ("sampler", {(MEMBER, "cfg"): 101.0}, MEMBER, "value_bigger_than_max", "cfg"),
    ("sampler", {(MEMBER, "previous"): ["1", 0]}, MEMBER, "return_type_mismatch", "previous"),
    ("sampler", {(MEMBER, "range_end"): -1.0}, MEMBER, "value_smaller_than_min", "range_end"),
    ("sampler", {(AGG, "window_start"): -1.0}, AGG, "value_smaller_than_min", "window_start"),
    ("sampler", {(AGG, "window_end"): 1e6}, AGG, "value_bigger_than_max", "window_end"),
    ("sampler", {(DEV, "step"): -1.0}, DEV, "value_smaller_than_min", "step"),
    ("sampler", {(DEV, "helper_step"): 11.0}, DEV, "value_bigger_than_max", "helper_step"),
    ("compose", {(AGG, "window_end"): -1.0}, AGG, "value_smaller_than_min", "window_end"),
    ("guider", {(SAMPLER, "cfg"): -1.0}, SAMPLER, "value_smaller_than_min", "cfg"),
    ("guider", {(SAMPLER, "members"): MISSING}, SAMPLER, "required_input_missing", "members"),
    ("sweep", {(SAMPLER, "steps"): 0}, SAMPLER, "value_smaller_than_min", "steps"),
    ("sweep", {(SAMPLER, "vae"): ["1", 0]}, SAMPLER, "return_type_mismatch", "vae"),
]


def _rid(case):
    route, changes, *_ = case
    (nid, name), value = next(iter(changes.items()))
    shown = "missing" if value is MISSING else ("link" if isinstance(value, list) else repr(value))
    return f"{route}.{nid}.{name}={shown}"


@pytest.mark.parametrize("case", REJECTED, ids=[_rid(c) for c in REJECTED])
def test_prompt_validation_rejects_with_node_errors(comfy_server, baseline, case):
    route, changes, bad_node, err_type, input_name = case
    status, body = comfy_server.post_prompt(with_inputs(amdm_prompt(route), changes))
    assert status == 400, f"accepted (HTTP {status}): {body}"
    errors = body["node_errors"][bad_node]["errors"]
    assert any(e["type"] == err_type and e["extra_info"].get("input_name") == input_name for e in errors), errors
    assert comfy_server.alive()


# -- 2. the pack's own validation at run time: execution_error naming the input or member ---------------

def _sd3_latent_nodes():
    """A non-empty 16-channel latent: the SD3-type model's own KSampler output."""
    return {"40": node("UNETLoader", unet_name=SD3, weight_dtype="default"),
            "41": node("EmptySD3LatentImage", width=64, height=64, batch_size=1),
            "42": node("KSampler", model=["40", 0], positive=[BASE_POS, 0], negative=[NEG, 0], latent_image=["41", 0],
                       seed=1, steps=2, cfg=2.0, sampler_name="euler", scheduler="simple", denoise=1.0)}


def _nine_members():
    """8 Multi-Model Member nodes chained through 'previous': the 8th is member 9 with the base."""
    nodes = {}
    prev = None
    for i in range(8):
        nid = str(50 + i)
        inputs = dict(model=["2", 0], positive=[HELPER_POS, 0], negative=[NEG, 0], cfg=2.0, weight=0.5)
        if prev:
            inputs["previous"] = [prev, 0]
        nodes[nid] = node("AMDM_Member", **inputs)
        prev = nid
    nodes[(SAMPLER, "members")] = [prev, 0]
    return nodes


FAILED = [
    # (id, route, changes, node that fails, message pattern)
    ("sampler.cfg=nan", "sampler", {(SAMPLER, "cfg"): NAN}, SAMPLER, r"base member \(node #20\): 'cfg' = nan"),
    ("sampler.base_weight=nan", "sampler", {(SAMPLER, "base_weight"): NAN}, SAMPLER,
     r"base member \(node #20\): 'base_weight' = nan"),
    ("sampler.denoise=nan", "sampler", {(SAMPLER, "denoise"): NAN}, SAMPLER, r"'denoise' = nan"),
    ("sampler.base_range_end=nan", "sampler", {(SAMPLER, "base_range_end"): NAN}, SAMPLER,
     r"base member \(node #20\): 'base_range_end' = nan"),
    ("sampler.sampler_name=unknown", "sampler", {(SAMPLER, "sampler_name"): "no_such_sampler"}, SAMPLER,
     r"'sampler_name'.*no_such_sampler"),
    ("sampler.scheduler=unknown", "sampler", {(SAMPLER, "scheduler"): "no_such_scheduler"}, SAMPLER,
     r"'scheduler'.*no_such_scheduler"),
    ("sampler.base_range_unit=unknown", "sampler", {(SAMPLER, "base_range_unit"): "steps"}, SAMPLER,
     r"base member \(node #20\): 'base_range_unit' = 'steps'"),
    ("sampler.sampler_name=CFG++ in the window", "sampler", {(SAMPLER, "sampler_name"): "euler_cfg_pp"}, SAMPLER,
     r"CFG\+\+ sampler"),
    ("sampler.base_range_end=0.5 with AMDM", "sampler", {(SAMPLER, "base_range_end"): 0.5}, SAMPLER,
     r"the base member \(node #20\) has a noise range"),
    ("sampler.weights all zero", "sampler", {(SAMPLER, "base_weight"): 0.0, (MEMBER, "weight"): 0.0}, SAMPLER,
     r"base member \(node #20\): 'base_weight' and every helper weight are 0"),
    ("sampler.latent_image=16-channel SD3 latent", "sampler",
     {**_sd3_latent_nodes(), (SAMPLER, "latent_image"): ["42", 0], (SAMPLER, "denoise"): 0.6}, SAMPLER,
     r"'latent_image'.*16 channels|16 channels.*'latent_image'"),
    ("sampler.latent_image=5-D video latent", "sampler",
     {"43": node("EmptyHunyuanLatentVideo", width=64, height=64, length=5, batch_size=1),
      (SAMPLER, "latent_image"): ["43", 0]}, SAMPLER, r"'latent_image'"),
    ("member.weight=nan", "sampler", {(MEMBER, "weight"): NAN}, MEMBER, r"member 2 \(node #10\): 'weight' = nan"),
    ("member.cfg=nan (string)", "sampler", {(MEMBER, "cfg"): "nan"}, MEMBER, r"member 2 \(node #10\): 'cfg' = nan"),
    ("member.range_start=nan", "sampler", {(MEMBER, "range_start"): NAN}, MEMBER,
     r"member 2 \(node #10\): 'range_start' = nan"),
    ("member.range_unit=unknown", "sampler", {(MEMBER, "range_unit"): "steps"}, MEMBER,
     r"member 2 \(node #10\): 'range_unit' = 'steps' is not one of"),
    ("member.range_start=2 percent", "sampler", {(MEMBER, "range_start"): 2.0}, MEMBER,
     r"member 2 \(node #10\): 'range_start' = 2.0 is a percent"),
    ("member=9 members", "sampler", _nine_members(), "57", r"member 9 \(node #57\): the chain has more than 8 members"),
    ("member.model=SDXL-type", "sampler", {("2", "unet_name"): SDXL}, SAMPLER,
     r"member 2 \(node #10\) has a SDXL latent \(4 channels, scale 0.13025\), the base member \(node #20\) a SD15 "
     r"latent"),
    ("member.model=SD3-type (16 channels)", "sampler", {("2", "unet_name"): SD3}, SAMPLER,
     r"member 2 \(node #10\) has a SD3 latent \(16 channels"),
    # "model=SD3-type, member SD3-type" was refused as a flow-matching base; now it runs (its HTTP test:
    # test_flow_members_run_over_http below)
    ("model=SDXL-type, member SD1.5", "sampler", {("1", "unet_name"): SDXL}, SAMPLER,
     r"member 2 \(node #10\) has a SD15 latent .*the base member \(node #20\) a SDXL latent"),
    ("member.model=SD1.5 through ModelSamplingSD3", "sampler",
     {"7": node("ModelSamplingSD3", model=["2", 0], shift=3.0), (MEMBER, "model"): ["7", 0]}, SAMPLER,
     r"member 2 \(node #10\) is a flow-type model"),
    ("aggregate.mode=unknown", "sampler", {(AGG, "mode"): "average"}, AGG, r"'mode' = 'average' is not one of"),
    ("aggregate.window_unit=unknown", "sampler", {(AGG, "window_unit"): "seconds"}, AGG, r"'window_unit' = 'seconds'"),
    ("aggregate.window_end=nan", "sampler", {(AGG, "window_end"): NAN}, AGG, r"'window_end' = nan must be"),
    ("aggregate.window_start after window_end", "sampler",
     {(AGG, "window_unit"): "percent", (AGG, "window_start"): 0.5, (AGG, "window_end"): 0.2}, AGG,
     r"'window_start' \(0.5\) is after 'window_end' \(0.2\)"),
    ("aggregate.window_end=2 percent", "sampler", {(AGG, "window_unit"): "percent", (AGG, "window_end"): 2.0}, AGG,
     r"'window_end' = 2.0 is a percent of the noise range"),
    ("aggregate.initial_noise=unknown", "sampler", {(AGG, "initial_noise"): "none"}, AGG, r"'initial_noise' = 'none'"),
    ("aggregate.step_noise=unknown", "sampler", {(AGG, "step_noise"): "random"}, AGG, r"'step_noise' = 'random'"),
    ("aggregate.initial_noise=shared with spherical", "sampler", {(AGG, "initial_noise"): "shared"}, AGG,
     r"initial_noise 'shared' with mode 'spherical'"),
    ("deviation.step=nan", "sampler", {(DEV, "step"): NAN}, DEV, r"'step' = nan must be a finite number"),
    ("deviation.step=2 relative", "sampler", {(DEV, "mode"): "relative", (DEV, "step"): 2.0}, DEV,
     r"'step' = 2.0: in 'relative' mode"),
    ("deviation.mode=unknown", "sampler", {(DEV, "mode"): "fixed"}, DEV, r"'mode' = 'fixed' is not one of"),
    ("deviation.target=unknown", "sampler", {(DEV, "target"): "paper"}, DEV, r"'target' = 'paper' is not one of"),
    ("deviation.members=unknown", "sampler", {(DEV, "members"): "helpers"}, DEV, r"'members' = 'helpers'"),
    ("compose.mode=unknown", "compose", {(AGG, "mode"): "spherical"}, AGG, r"'mode' = 'spherical' is not one of"),
    ("compose.window_start=nan", "compose", {(AGG, "window_start"): NAN}, AGG, r"'window_start' = nan must be"),
    ("guider.base_weight=nan", "guider", {(SAMPLER, "base_weight"): NAN}, SAMPLER,
     r"base member \(node #20\): 'base_weight' = nan"),
    ("guider.member SDXL-type", "guider", {("2", "unet_name"): SDXL}, SAMPLER, r"member 2 \(node #10\) has a SDXL"),
    ("guider.sampler=CFG++", "guider", {("22", "sampler_name"): "euler_cfg_pp"}, "24", r"CFG\+\+ sampler"),
    ("sweep.values=not a number", "sweep", {(SAMPLER, "values"): "0.1, abc"}, SAMPLER,
     r"'values': 'abc' is not a number"),
    ("sweep.parameter=unknown", "sweep", {(SAMPLER, "parameter"): "cfg"}, SAMPLER, r"sweep parameter 'cfg'"),
    ("sweep.parameter_2=unknown", "sweep", {(SAMPLER, "parameter_2"): "cfg", (SAMPLER, "values_2"): "1"}, SAMPLER,
     r"parameter 'cfg'|'parameter_2'"),
    ("sweep.values_2=not a number", "sweep",
     {(SAMPLER, "parameter_2"): "base_weight", (SAMPLER, "values_2"): "0.5, y"}, SAMPLER, r"'values_2'.*'y'"),
    ("sweep.scheduler=unknown", "sweep", {(SAMPLER, "scheduler"): "no_such_scheduler"}, SAMPLER, r"'scheduler'"),
]


@pytest.mark.parametrize("case", FAILED, ids=[c[0] for c in FAILED])
def test_pack_refuses_at_run_time_with_a_named_error(comfy_server, rel_models, baseline, case):
    _, route, changes, bad_node, pattern = case
    graph = with_inputs(amdm_prompt(route), changes)
    try:
        result = comfy_server.run(graph, check=False, timeout=120)
    except PromptRejected as e:
        # form changed for hosts >= 0.8: V3 COMBO values are validated at prompt time, so a wrong
        # option is an HTTP 400 instead of an execution error. Substance kept: only COMBO inputs may be
        # refused this way, and the refusal must name the bad node and input.
        errors = (e.body.get("node_errors") or {}).get(bad_node, {}).get("errors", [])
        names = {x.get("extra_info", {}).get("input_name") for x in errors}
        changed = {name for (node_id, name) in changes if node_id == bad_node}
        assert e.status == 400 and names and names <= changed, e.body
        assert all(x.get("type") == "value_not_in_list" for x in errors), e.body
        assert comfy_server.alive()
        return
    assert result.status_str == "error", f"the prompt ran ({result.status_str}); expected an error matching {pattern!r}"
    err = result.error
    assert err is not None and err.get("exception_message") is not None, result.messages[-3:]
    message = err["exception_message"]
    assert err["node_id"] == bad_node and re.search(pattern, message), (
        f"node #{err['node_id']} ({err['node_type']}) raised {err['exception_type']}: {message.strip()}\n"
        f"expected node #{bad_node} and a message matching {pattern!r}")
    assert comfy_server.alive()


def test_errors_name_members_by_the_title_the_canvas_shows(comfy_server, rel_models, baseline):
    """The canvas shows node titles, not ids: a member whose node has a title of its own (the
    frontend's graphToPrompt sends it as _meta.title) is named by it, beside its id for API users."""
    graph = with_inputs(amdm_prompt("guider"), {("2", "unet_name"): SDXL})
    graph[MEMBER]["_meta"] = {"title": "Style helper"}
    result = comfy_server.run(graph, check=False, timeout=120)
    assert result.status_str == "error" and result.error["node_id"] == SAMPLER
    assert re.search(r'member 2 "Style helper" \(node #10\) has a SDXL', result.error["exception_message"])


def test_flow_members_run_over_http(comfy_server, rel_models):
    """SD3-type base and helper (flow matching, 16-channel latents) through the real server, AMDM in
    flow units (the stock EmptyLatentImage's 4 channels are widened by the host's own
    fix_empty_latent_channels)."""
    graph = with_inputs(amdm_prompt(), {("1", "unet_name"): SD3, ("2", "unet_name"): SD3})
    result = comfy_server.run(graph, timeout=120)
    assert SAMPLER in result.executing and result.ui(STATS)["shape"] == [[1, 16, 8, 8]]
    summary = json.loads(result.ui(SAMPLER)["amdm_summary"][0])
    # helpers step from step 0 to the window's end: 4 + 3 evaluations
    assert summary["window_steps"] == [1, 2] and [m["evaluations"] for m in summary["members"]] == [4, 3]


def test_the_next_prompt_after_all_bad_prompts_is_bitwise_normal(comfy_server, baseline):
    # a prompt with another seed first, so the sampler really runs again for the baseline prompt
    comfy_server.run(amdm_prompt(seed=6))
    result = comfy_server.run(amdm_prompt())
    assert SAMPLER in result.executing and sha(result) == baseline


# -- accepted boundary values, against the stock KSampler over HTTP -----------------------------------

@pytest.mark.parametrize("changes, stock_steps", [
    ({(SAMPLER, "steps"): 1}, 1),
    ({(AGG, "window_start"): 10, (AGG, "window_end"): 20}, 4),
    ({(MEMBER, "weight"): 0.0}, 4),
], ids=["steps-1", "window-outside-the-schedule", "helper-weight-0"])
def test_boundaries_equal_the_stock_ksampler_over_http(comfy_server, changes, stock_steps):
    amdm = comfy_server.run(with_inputs(amdm_prompt(), changes))
    stock = comfy_server.run(harness.sample_graph(seed=5, steps=stock_steps, cond_seed=1))
    assert sha(amdm) == stock.ui("7")["sha256"][0]


def test_denoise_0_returns_the_input_latent(comfy_server):
    result = comfy_server.run(with_inputs(amdm_prompt(), {(SAMPLER, "denoise"): 0.0}))
    stats = result.ui(STATS)
    assert stats["mean"] == [0.0] and stats["std"] == [0.0]


# -- faults on the shared server ------------------------------------------------------------------------

def _interrupt_at(client, value):
    """Press cancel (POST /interrupt) once the sampler reports `value` member steps done."""
    sent = []

    def on_message(mtype, data):
        if mtype == "progress" and data.get("node") == SAMPLER and data["value"] >= value and not sent:
            sent.append(client.interrupt())
    return on_message


# Long schedules leave ample time (tens of member steps) for the interrupt to arrive in the intended part.
@pytest.mark.parametrize("where, steps, window, at", [("in-window", 24, (1, 16), 3), ("after-window", 40, (1, 2), 8)])
def test_interrupt_then_the_next_prompt_is_bitwise_normal(comfy_server, second_server, baseline, where, steps, window,
                                                           at):
    result = comfy_server.run(amdm_prompt(steps=steps, window=window, seed=21), check=False, timeout=120,
                              on_message=_interrupt_at(comfy_server, at))
    assert result.status_str == "error" and any(t == "execution_interrupted" for t, _ in result.messages)
    total = steps + window[1] + 1
    seen = [p["value"] for p in result.progress if p["node"] == SAMPLER]
    assert at <= max(seen) < total, f"progress {seen}: the run was not stopped"
    if where == "in-window":
        assert max(seen) <= 2 * (window[1] + 1), f"stopped after the window ({seen})"
    assert comfy_server.alive()
    # Form changed for hosts >= 0.23: their cache keeps the baseline prompt's outputs across an
    # interrupt, so re-running it may replay them without sampling. Substance kept (and sharpened):
    # the interrupted prompt itself never completed, so it must run now, on the models as the
    # interrupt left them, and give the bytes of the same prompt on a server that was never
    # interrupted (servers agree bit for bit: test_a_fresh_server_gives_the_same_bytes).
    prompt = amdm_prompt(steps=steps, window=window, seed=21)
    after = comfy_server.run(prompt)
    assert SAMPLER in after.executing
    fresh = second_server.run(prompt)
    assert SAMPLER in fresh.executing and sha(after) == sha(fresh)
    again = comfy_server.run(amdm_prompt())
    assert SAMPLER in again.executing + again.cached
    if SAMPLER in again.executing or again.outputs.get(STATS):     # a replayed cache may omit the ui
        assert sha(again) == baseline


def test_free_between_prompts_gives_the_same_bytes(comfy_server, baseline):
    comfy_server.run(amdm_prompt())
    status, _ = comfy_server.json("POST", "/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    time.sleep(1.0)                     # the worker applies the flags when it wakes up
    result = comfy_server.run(amdm_prompt())
    assert "1" in result.executing and SAMPLER in result.executing, "caches were not dropped by /free"
    assert sha(result) == baseline


def test_changed_weight_re_executes_and_unchanged_prompt_may_be_cached(comfy_server, baseline):
    first = comfy_server.run(amdm_prompt())
    changed = comfy_server.run(amdm_prompt(weight=0.5))
    assert SAMPLER in changed.executing and SAMPLER not in changed.cached
    assert sha(changed) != baseline
    back = comfy_server.run(amdm_prompt())
    assert SAMPLER in back.executing and sha(back) == baseline
    again = comfy_server.run(amdm_prompt())
    assert SAMPLER in again.cached or SAMPLER in again.executing
    if SAMPLER in again.cached:         # an output node's ui is replayed from the cache
        assert STATS in again.cached
    if again.outputs.get(STATS):
        assert sha(again) == baseline
    assert sha(first) == baseline


# -- a second server: fault injection, cross-server and restart determinism -------------------------------

FAULT_NODES = '''
"""Fault injection for the reliability tests (written by tests/server/test_reliability_api.py)."""
import comfy.model_management


class AMDMRel_FaultyModel:
    """A clone of MODEL whose fail_at-th UNet call (counted per execution of this node) raises a
    RuntimeError or presses ComfyUI's cancel button. `nonce` forces a new execution."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "fail_at": ("INT", {"default": 2, "min": 1, "max": 10000}),
                             "action": (["raise", "interrupt"],), "nonce": ("INT", {"default": 0, "min": 0})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "amdm_test"

    def patch(self, model, fail_at, action, nonce):
        m = model.clone()
        state = {"calls": 0}

        def wrapper(apply_model, args):
            state["calls"] += 1
            if state["calls"] == fail_at:
                if action == "raise":
                    raise RuntimeError(f"AMDMRel injected fault at UNet call {fail_at}")
                comfy.model_management.interrupt_current_processing(True)
            return apply_model(args["input"], args["timestep"], **args["c"])
        m.set_model_unet_function_wrapper(wrapper)
        return (m,)


NODE_CLASS_MAPPINGS = {"AMDMRel_FaultyModel": AMDMRel_FaultyModel}
'''


def _start_second_server(tiny_model_set, tmp_path_factory, tag):
    fault_pack = tmp_path_factory.mktemp(f"rel_fault_nodes_{tag}")
    (fault_pack / "__init__.py").write_text(FAULT_NODES)
    server = harness.ComfyServer(
        base_dir=tmp_path_factory.mktemp(f"rel_base_{tag}"), models_dir=tiny_model_set.models_dir,
        log_path=tmp_path_factory.mktemp(f"rel_log_{tag}") / "server.log",
        custom_nodes={harness.PACK_DIR_NAME: harness.REPO_ROOT, "comfy_test_nodes": harness.TEST_NODES_DIR,
                      "amdm_rel_fault_nodes": fault_pack})
    try:
        return server, server.start()
    except Exception:
        server.cleanup()
        raise


@pytest.fixture(scope="module")
def second_server(tiny_model_set, tmp_path_factory, rel_models):
    server, client = _start_second_server(tiny_model_set, tmp_path_factory, "a")
    try:
        yield client
    finally:
        server.cleanup()


def test_a_fresh_server_gives_the_same_bytes(second_server, comfy_server, baseline):
    """The shared server, after every bad prompt and fault above, and a fresh server agree."""
    assert sha(second_server.run(amdm_prompt())) == baseline


FORWARD_FAULTS = [
    # (id, faulty member, UNet call, action): helpers run steps 0..2, the base steps 0..3
    ("helper-mid-window-raise", "helper", 2, "raise"),
    ("base-after-window-raise", "base", 4, "raise"),
    ("helper-mid-window-interrupt", "helper", 2, "interrupt"),
    ("compose-helper-mid-window-raise", "compose", 2, "raise"),
]


@pytest.mark.parametrize("case, who, at, action", FORWARD_FAULTS, ids=[f[0] for f in FORWARD_FAULTS])
def test_fault_inside_a_member_forward_then_the_next_prompt_is_bitwise_normal(second_server, baseline, case, who, at,
                                                                             action):
    route = "compose" if who == "compose" else "sampler"
    graph = amdm_prompt(route)
    target = "1" if who == "base" else "2"
    graph["9"] = node("AMDMRel_FaultyModel", model=[target, 0], fail_at=at, action=action,
                      nonce=zlib.crc32(case.encode()) % 10 ** 6)
    graph[SAMPLER if who == "base" else MEMBER]["inputs"]["model"] = ["9", 0]
    result = second_server.run(graph, check=False, timeout=120)
    assert result.status_str == "error"
    if action == "raise":
        err = result.error
        assert err["node_id"] == SAMPLER and err["exception_type"].endswith("RuntimeError"), err
        assert f"AMDMRel injected fault at UNet call {at}" in err["exception_message"]
    else:
        assert any(t == "execution_interrupted" for t, _ in result.messages)
    assert second_server.alive()
    after = second_server.run(amdm_prompt(seed=6))       # another prompt first: the sampler must run again
    assert after.ok
    again = second_server.run(amdm_prompt())
    assert SAMPLER in again.executing and sha(again) == baseline


def test_same_latent_after_a_server_restart(second_server, tiny_model_set, tmp_path_factory, baseline):
    """Stop the second server and start a new process: the same prompts give the same bytes."""
    prompts = [amdm_prompt(), amdm_prompt("guider"), amdm_prompt(seed=123, steps=6, window=(1, 3), weight=0.3)]
    before = [sha(second_server.run(p)) for p in prompts]
    second_server.server.stop()
    server, client = _start_second_server(tiny_model_set, tmp_path_factory, "restart")
    try:
        after = [sha(client.run(p)) for p in prompts]
    finally:
        server.cleanup()
    assert after == before
    assert before[0] == baseline and before[1] == baseline     # the GUIDER route gives the sampler's bytes

