"""The benchmark's methods: each one small function that samples a batch for one target through
the real host (stock ComfyUI nodes or the pack's nodes, in-process) and reports its compute.

A method function is called as fn(ctx, target, batch, seed, steps, **params) and returns a
RunOut(samples [B,1,16,16] latent, evaluations, detail). `evaluations` counts member steps (one
CFG-guided denoiser call of one model at one step, cond+uncond batched), summed over members, for
the whole batch run (it does not depend on the batch size); the network forward rows are counted
separately by the models' counters.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch

from . import ecosystem as eco
from .models import MODEL_ASPECT

SAMPLER = "euler"
SCHEDULER = "ddim_uniform"
CFG = 5.0


@dataclass
class RunOut:
    samples: torch.Tensor
    evaluations: int
    detail: dict = field(default_factory=dict)


@dataclass
class Context:
    models: dict            # name -> ModelPatcher
    pack: object            # amdm_pack
    nodes: object           # ComfyUI's nodes module
    weights_dir: object = None
    cfg: float = CFG
    sampler: str = SAMPLER
    scheduler: str = SCHEDULER

    @property
    def N(self):
        return self.pack.nodes


# -- host helpers ----------------------------------------------------------------------------

def run_sigmas(ctx, steps):
    import comfy.samplers
    ms = ctx.models["A"].get_model_object("model_sampling")
    return comfy.samplers.calculate_sigmas(ms, ctx.scheduler, steps)


def handoff_steps(ctx, steps, percents):
    """Stage boundaries (step indices) for handoffs at the given percents of the noise range: the
    steps whose starting sigma lies above the level percent_to_sigma(p) belong to the earlier stage
    (the pack's noise ranges are (low, high], the same split)."""
    ms = ctx.models["A"].get_model_object("model_sampling")
    sig = run_sigmas(ctx, steps)
    out = []
    for p in percents:
        level = float(ms.percent_to_sigma(p))
        out.append(sum(1 for j in range(steps) if float(sig[j]) > level))
    return out


def member_chain(ctx, target, helpers, weights, ranges=None):
    """Multi-Model Member chain (the pack's node) for helper names with their weights."""
    chain = None
    for i, (name, w) in enumerate(zip(helpers, weights)):
        kw = {}
        if ranges is not None and ranges[i] is not None:
            kw = dict(range_start=ranges[i][0], range_end=ranges[i][1], range_unit="percent")
        chain = ctx.N.node_member.MultiModelMember.execute(
            ctx.models[name], eco.member_conditioning(name, target), eco.negative(), ctx.cfg, float(w), chain,
            **kw).args[0]
    return chain


def _sample_mms(ctx, target, base, chain, base_weight, batch, seed, steps, aggregation, deviation, kw, extra=()):
    with torch.inference_mode():
        out = ctx.N.node_sampler.MultiModelSampler.execute(
            ctx.models[base], eco.member_conditioning(base, target), eco.negative(), chain,
            eco.empty_latent(batch), seed, steps, ctx.cfg, ctx.sampler, ctx.scheduler, 1.0, float(base_weight),
            aggregation, deviation, **kw)
    summary = json.loads(out.ui["amdm_summary"][0])
    return RunOut(out.args[0]["samples"].clone(), int(summary["total_evaluations"]),
                  {"summary": {k: summary.get(k) for k in ("window_steps", "window_sigmas", "operator",
                                                           "aggregation", "norm_ratio", "seconds")},
                   "member_evaluations": [m["evaluations"] for m in summary["members"]],
                   "normalized_weights": [m["normalized_weight"] for m in summary["members"]],
                   **{k: summary.get(k) for k in extra}})


def aggregate_node(ctx, mode="spherical", unit="steps", start=1, end=3, initial_noise="independent",
                   normalize=True, strength=None, retained_share=None):
    """Spherical Aggregate; `strength` / `retained_share` (its appended optional inputs) are passed only
    when given, so the older rows call the node exactly as before."""
    kw = {}
    if strength is not None:
        kw["strength"] = strength
    if retained_share is not None:
        kw["retained_share"] = float(retained_share)
    return ctx.N.node_aggregate.SphericalAggregate.execute(mode, unit, float(start), float(end), initial_noise,
                                                           "independent", bool(normalize), **kw).args[0]


def guidance_node(ctx, form="autoguidance_cfg", w=2.0, unit="percent", start=0.0, end=1.0):
    return ctx.N.node_guidance.ModelGuidance.execute(form, float(w), unit, float(start), float(end)).args[0]


def superpose_node(ctx, mode="or", temperature=1.0):
    return ctx.N.node_superpose.Superposition.execute(mode, float(temperature)).args[0]


def with_scheduler(ctx, scheduler):
    """The context with another scheduler (None: unchanged)."""
    import dataclasses
    return ctx if scheduler is None else dataclasses.replace(ctx, scheduler=scheduler)


def deviation_node(ctx, step=0.3516, mode="absolute", target="faithful", members="base", helper_step=0.3516):
    return ctx.N.node_deviation.DeviationOptimize.execute(float(step), mode, target, members,
                                                          float(helper_step)).args[0]


def compose_node(ctx, mode="composable", unit="percent", start=0.0, end=1.0):
    return ctx.N.node_compose.ComposePredictions.execute(mode, unit, float(start), float(end)).args[0]


# -- methods -----------------------------------------------------------------------------------

def single(ctx, target, batch, seed, steps, model):
    """One model alone with its own aspect's conditioning: stock KSampler (nodes.common_ksampler)."""
    with torch.inference_mode():
        out = ctx.nodes.common_ksampler(ctx.models[model], seed, steps, ctx.cfg, ctx.sampler, ctx.scheduler,
                                        eco.member_conditioning(model, target), eco.negative(),
                                        eco.empty_latent(batch))[0]
    return RunOut(out["samples"].clone(), steps, {"route": "stock KSampler"})


def merge(ctx, target, batch, seed, steps, models):
    """Weight-averaged merge (stock ModelMergeSimple, equal shares) sampled by the stock KSampler
    with the joint conditioning (every aspect of the target in one context vector)."""
    from comfy_extras.nodes_model_merging import ModelMergeSimple
    merged = ctx.models[models[0]]
    for i, name in enumerate(models[1:], start=1):
        # after i models, the running merge holds i/(i+1) of the total weight
        merged = ModelMergeSimple().merge(merged, ctx.models[name], i / (i + 1))[0]
    aspects = [MODEL_ASPECT[m] for m in models if MODEL_ASPECT[m] in target]
    with torch.inference_mode():
        out = ctx.nodes.common_ksampler(merged, seed, steps, ctx.cfg, ctx.sampler, ctx.scheduler,
                                        eco.conditioning(target, aspects), eco.negative(),
                                        eco.empty_latent(batch))[0]
    return RunOut(out["samples"].clone(), steps, {"route": "stock ModelMergeSimple + KSampler",
                                                  "conditioning": aspects})


def handoff_chain(ctx, target, batch, seed, steps, order, percents):
    """Sequential handoff by noise level with the stock KSamplerAdvanced chain: stage 1 adds the
    noise and returns with leftover noise, later stages continue without adding noise."""
    bounds = [0] + handoff_steps(ctx, steps, percents) + [steps]
    latent = eco.empty_latent(batch)
    ks = ctx.nodes.KSamplerAdvanced()
    with torch.inference_mode():
        for i, name in enumerate(order):
            last = i == len(order) - 1
            latent = ks.sample(ctx.models[name], "enable" if i == 0 else "disable", seed, steps, ctx.cfg,
                               ctx.sampler, ctx.scheduler, eco.member_conditioning(name, target), eco.negative(),
                               latent, bounds[i], bounds[i + 1], "disable" if last else "enable")[0]
    return RunOut(latent["samples"].clone(), steps, {"route": "stock KSamplerAdvanced chain", "stage_steps": bounds})


def handoff_onepass(ctx, target, batch, seed, steps, order, percents):
    """The same handoff in one pass: Compose Predictions + member noise ranges (the pack)."""
    edges = [0.0] + list(percents) + [1.0]
    rng = [(edges[i], edges[i + 1]) for i in range(len(order))]
    chain = member_chain(ctx, target, order[1:], [1.0] * (len(order) - 1), ranges=rng[1:])
    agg = compose_node(ctx, "composable", "percent", 0.0, 1.0)
    r = _sample_mms(ctx, target, order[0], chain, 1.0, batch, seed, steps, agg, None,
                    dict(base_range_start=rng[0][0], base_range_end=rng[0][1], base_range_unit="percent"))
    r.detail["route"] = "pack Compose Predictions + member ranges"
    r.detail["stage_steps"] = [0] + handoff_steps(ctx, steps, percents) + [steps]
    return r


def compose(ctx, target, batch, seed, steps, models, mode="composable", start=0.0, end=1.0, weights=None):
    """Prediction-space composition at one shared state (the pack's Compose Predictions block):
    composable diffusion (weights 1) or averaging of the members' CFG results, over a noise range."""
    agg = compose_node(ctx, mode, "percent", start, end)
    if weights is None:
        weights = [1.0] * len(models)
    chain = member_chain(ctx, target, models[1:], weights[1:])
    r = _sample_mms(ctx, target, models[0], chain, weights[0], batch, seed, steps, agg, None, {})
    r.detail["route"] = "pack Compose Predictions"
    return r


def amdm(ctx, target, batch, seed, steps, models, weights=(0.5, 0.866), mode="spherical", unit="steps",
         start=1, end=3, initial_noise="independent", normalize=True, dev_step=0.3516, dev_target="faithful",
         dev_members="base", helper_step=0.3516, dev_mode="absolute", ranges=None, strength=None,
         retained_share=None, scheduler=None):
    """AMDM through the pack: Multi-Model Sampler + Member chain + Spherical Aggregate + Deviation
    Optimize (all the pack's nodes); models[0] is the base (specified) model. `strength` = "per noise
    interval" with `retained_share`: Spherical Aggregate's step-count-invariant weights; `scheduler`
    overrides the benchmark's scheduler for this row."""
    ctx = with_scheduler(ctx, scheduler)
    agg = aggregate_node(ctx, mode, unit, start, end, initial_noise, normalize, strength, retained_share)
    dev = deviation_node(ctx, dev_step, dev_mode, dev_target, dev_members, helper_step)
    chain = member_chain(ctx, target, models[1:], weights[1:], ranges=ranges)
    r = _sample_mms(ctx, target, models[0], chain, weights[0], batch, seed, steps, agg, dev, {},
                    extra=("strength", "retained_share", "target_share"))
    r.detail["route"] = "pack Multi-Model Sampler (AMDM)"
    r.detail["scheduler"] = ctx.scheduler
    return r


def _cond(name, target):
    """A member's positive conditioning; "base" (the unconditional model every finetune started from)
    gets the all-zero context it was trained on."""
    return eco.negative() if name == "base" else eco.member_conditioning(name, target)


def guidance(ctx, target, batch, seed, steps, strong, weak, form="autoguidance_cfg", w=2.0, unit="percent",
             start=0.0, end=1.0, scheduler=None):
    """Model Guidance (autoguidance) through the pack: Multi-Model Sampler with the strong model as the
    base and one Multi-Model Member (the weak model), aggregation = Model Guidance. Each member on its own
    positive conditioning (the unconditional base on the zero context). `evaluations` = the node's member
    calls (a strong call batches cond + uncond in the CFG form); the network rows are counted apart."""
    ctx = with_scheduler(ctx, scheduler)
    agg = guidance_node(ctx, form, w, unit, start, end)
    chain = ctx.N.node_member.MultiModelMember.execute(ctx.models[weak], _cond(weak, target), eco.negative(),
                                                       ctx.cfg, 1.0, None).args[0]
    with torch.inference_mode():
        out = ctx.N.node_sampler.MultiModelSampler.execute(
            ctx.models[strong], _cond(strong, target), eco.negative(), chain, eco.empty_latent(batch), seed, steps,
            ctx.cfg, ctx.sampler, ctx.scheduler, 1.0, 1.0, agg, None)
    s = json.loads(out.ui["amdm_summary"][0])
    g = s["guidance"]
    return RunOut(out.args[0]["samples"].clone(), int(s["total_evaluations"]),
                  {"route": "pack Multi-Model Sampler + Model Guidance", "scheduler": ctx.scheduler,
                   "summary": {k: s.get(k) for k in ("window_steps", "window_sigmas", "operator", "aggregation",
                                                     "seconds")},
                   "guidance": g, "member_evaluations": [m["evaluations"] for m in s["members"]],
                   # forward passes per sample the node's counts imply (each kind one batch row per sample;
                   # the base alone outside the window runs its own CFG: 2 rows)
                   "expected_rows_per_sample": sum(g["evaluations"].values()) + 2 * g["base_alone_evaluations"]})


def superpose(ctx, target, batch, seed, steps, models, mode="or", temperature=1.0, weights=None, scheduler=None):
    """Superposition (SuperDiff OR / AND) through the pack: Multi-Model Sampler + Member chain, aggregation
    = Superposition; every member with its own CFG at every step of the node's own reverse-SDE stepper
    (the sampler name is not used; the scheduler and steps give the sigmas). Weights are log priors."""
    ctx = with_scheduler(ctx, scheduler)
    agg = superpose_node(ctx, mode, temperature)
    if weights is None:
        weights = [1.0] * len(models)
    chain = member_chain(ctx, target, models[1:], weights[1:])
    with torch.inference_mode():
        out = ctx.N.node_sampler.MultiModelSampler.execute(
            ctx.models[models[0]], eco.member_conditioning(models[0], target), eco.negative(), chain,
            eco.empty_latent(batch), seed, steps, ctx.cfg, ctx.sampler, ctx.scheduler, 1.0, float(weights[0]),
            agg, None)
    s = json.loads(out.ui["amdm_summary"][0])
    p = s["superposition"]
    return RunOut(out.args[0]["samples"].clone(), int(s["total_evaluations"]),
                  {"route": "pack Multi-Model Sampler + Superposition", "scheduler": ctx.scheduler,
                   "member_evaluations": [m["evaluations"] for m in s["members"]],
                   "superposition": {k: p.get(k) for k in ("mode", "temperature", "steps", "stepper", "sampler_used",
                                                           "log_prior", "kappa_mean", "max_log_density_gap",
                                                           "member_calls_per_step", "evaluations_per_step")},
                   "expected_rows_per_sample": 2 * int(s["total_evaluations"])})


def nested3(base=0.5):
    """Three-member weights with the base at `base` and the helpers sharing the rest equally
    (sum of squares 1)."""
    h = math.sqrt((1 - base * base) / 2)
    return (base, h, h)
