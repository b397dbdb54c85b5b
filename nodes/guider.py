"""Guider_MultiModel: a CFGGuider that runs AMDM (or a composition) over several members in one
sampling pass.

Call path (ComfyUI's own frames in brackets):
  Guider_MultiModel.sample  -> plan_run, refusals before loading, helpers' host bookkeeping
    [CFGGuider.sample -> outer_sample (loads base + helpers) -> inner_sample]
  Guider_MultiModel.inner_sample -> the helpers' conds -> [CFGGuider.inner_sample]
    [-> KSAMPLER.sample: noise scaling, inpainting] -> _AMDMSampler._sample -> Guider_MultiModel.run
  run -> run_amdm -> amdm_core.amdm_sample (steps every member, aggregates: spherical_aggregate)
      -> run_compose -> the host sampler over ComposeModel
      -> run_guidance -> the host sampler over GuidanceModel (amdm_core.guide per evaluation)
      -> run_superpose -> amdm_core.superpose_sample (its own reverse-SDE stepper; no host sampler)

The base member goes through ComfyUI's unchanged CFGGuider path (wrappers, hooks, ControlNets
keep working for it). Helpers are private clones that ride along as additional models of the
base clone, so ONE load_models_gpu call loads every member; the per-model bookkeeping the stock
guider does is repeated for each helper by host_mirror.py. Inputs are never mutated.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch

import comfy.samplers

from ..amdm_core import (EMPTY_WINDOW, DiscreteSchedule, SuperposeTrace, Trace, amdm_sample, helper_initial_noise,
                         k_space, rate_for_share, rate_plan, seeded_noise, superpose_sample)
from .compose_model import ComposeModel
from .guidance_model import GuidanceModel
from .host_mirror import check_multigpu, enter_helper, exit_helper, helper_extra_models, prepare_helper_run
from .host_stepper import HostStepper, MemberModel, check_sampler, check_step_noise, sampler_display_name
from .members import Member, MemberError, check_compatible, state_units
from .run_plan import RunPlan, plan_run
from .settings import (STRENGTH_PER_INTERVAL, AggregationSettings, ComposeSettings, DeviationSettings,
                       GuidanceSettings, SuperposeSettings)
from .window import rate_interval

SETTINGS_TYPES = (AggregationSettings, ComposeSettings, GuidanceSettings, SuperposeSettings)

HELPERS_KEY = "amdm_helpers"
log = logging.getLogger("amdm")


@dataclass
class RunReport:
    """What one sample() call did; the summary is built from it."""
    plan: RunPlan
    trace: Trace | None = None
    seconds: float = 0.0
    weight_swaps: int = 0
    guidance: dict | None = None              # Model Guidance: evaluations by kind, guided steps
    superpose: SuperposeTrace | None = None   # Superposition: kappa and log-densities per step


class Guider_MultiModel(comfy.samplers.CFGGuider):
    def __init__(self, members: list[Member], aggregation: AggregationSettings | ComposeSettings | None = None,
                 deviation: DeviationSettings | None = None):
        check_compatible(members)
        base = members[0]
        aggregation = aggregation or AggregationSettings()
        if not isinstance(aggregation, SETTINGS_TYPES):
            raise ValueError("'aggregation' must come from a Spherical Aggregate, Compose Predictions, Model Guidance "
                             "or Superposition node.")
        if isinstance(aggregation, AggregationSettings) and not base.noise_range.everywhere:
            raise MemberError(f"the {base.label} has a noise range; with Spherical Aggregate (AMDM) the base model "
                              f"carries the result over the whole schedule. Use Compose Predictions for handoffs.")
        _check_cooperation(members, aggregation)
        if deviation is not None and not isinstance(deviation, DeviationSettings):
            raise ValueError("'deviation' must come from a Deviation Optimize node.")
        super().__init__(base.model.clone())        # private: additional models never touch the user's MODEL
        self.set_conds(base.positive, base.negative)
        self.set_cfg(base.cfg)
        self.members = list(members)
        self.aggregation = aggregation
        self.operator = {ComposeSettings: "compose", GuidanceSettings: "guidance",
                         SuperposeSettings: "superpose"}.get(type(aggregation), "amdm")
        self.composing = self.operator != "amdm"        # one shared trajectory (prediction space or SDE)
        self.deviation = None if self.composing else deviation
        # a helper with weight 0 contributes nothing: it is neither loaded nor evaluated
        self.helpers = [m for m in members[1:] if m.weight > 0]
        self.subs = []
        for m in self.helpers:
            g = comfy.samplers.CFGGuider(m.model.clone())
            g.set_conds(m.positive, m.negative)     # the host's own inner_set_conds (0.33: non-dynamic delegate)
            # the weak model of Model Guidance is read on its positive prompt only (cfg 1: one pass)
            g.set_cfg(1.0 if self.operator == "guidance" else m.cfg)
            self.subs.append(g)
        self.progress_hook = None        # set by run_guider for member-step progress
        self.report: RunReport | None = None

    def _check_reference_target(self):
        units = state_units(self.model_patcher.get_model_object("model_sampling"))
        if self.deviation is not None and self.deviation.target == "reference" and not units.discrete:
            raise ValueError(f"Deviation Optimize: target 'reference' is the reference code's formula on a discrete "
                             f"eps/v schedule (SD1.x/SDXL); the {self.members[0].label} is a {units.family} model. "
                             f"Use target 'faithful'.")

    def plan(self, sigmas) -> RunPlan:
        """The plan of a run over these sigmas (pure: nothing is loaded or changed)."""
        return plan_run(self.members[0], self.helpers, self.aggregation, sigmas,
                        self.model_patcher.get_model_object("model_sampling"))

    # -- sample: the stock bookkeeping, mirrored for every helper (host_mirror.py) -------------
    def sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, disable_pbar=False,
               seed=None):
        plan = self.plan(sigmas)
        active = plan.helpers_evaluated
        if self.operator == "superpose":
            _check_superpose_sigmas(sigmas, self.members[0].label,
                                    state_units(self.model_patcher.get_model_object("model_sampling")))
        # superposition steps itself: the sampler is not used (the summary says so)
        check_sampler(sampler, window_empty=not active or self.operator == "superpose")   # before any load
        if active:
            check_multigpu([(self.members[0].label, self.model_patcher)]
                           + [(m.label, g.model_patcher) for m, g in zip(self.helpers, self.subs)])
        if active and not self.composing:
            check_step_noise(sampler, self.aggregation)
            self._check_reference_target()
        self.report = RunReport(plan)
        self._helper_noise = (helper_initial_noise(noise, seed, len(self.subs), self.aggregation.initial_noise)
                              if active and not self.composing else [])
        saved = []
        start = time.perf_counter()
        try:
            if active:
                saved = [enter_helper(g) for g in self.subs]
                extras = [m for g in self.subs for m in helper_extra_models(g)]
                self.model_patcher.set_additional_models(HELPERS_KEY, [g.model_patcher for g in self.subs] + extras)
            return super().sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)
        finally:
            for s in saved:
                exit_helper(s)
            self.model_patcher.remove_additional_models(HELPERS_KEY)
            self.report.seconds = time.perf_counter() - start

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar,
                     seed, **kwargs):
        if not self.report.plan.helpers_evaluated:
            return super().inner_sample(noise, latent_image, device, _AMDMSampler(sampler, self), sigmas,
                                        denoise_mask, callback, disable_pbar, seed, **kwargs)
        li = latent_image
        if li is not None and torch.count_nonzero(li) > 0:
            li = self.inner_model.process_latent_in(li)
        for g in self.subs:
            prepare_helper_run(g, noise, li, device, sigmas, denoise_mask, seed, **kwargs)
        ok = False
        try:
            out = super().inner_sample(noise, latent_image, device, _AMDMSampler(sampler, self), sigmas,
                                       denoise_mask, callback, disable_pbar, seed, **kwargs)
            ok = True
            return out
        finally:
            if not ok:       # on success the stock outer_sample cleans every additional model up
                for g in self.subs:
                    g.model_patcher.cleanup()

    # -- the loop ---------------------------------------------------------------------------
    def run(self, model, x, sigmas, extra_args, callback, disable, host, max_denoise):
        plan = self.report.plan
        if self.operator == "superpose" and plan.helpers_evaluated:
            return self.run_superpose(model, x, sigmas, extra_args, callback, plan)
        if self.operator == "guidance" and plan.helpers_evaluated:
            return self.run_guidance(model, x, sigmas, extra_args, callback, disable, host, plan)
        if self.composing and plan.helpers_evaluated:
            return self.run_compose(model, x, sigmas, extra_args, callback, disable, host, plan)
        return self.run_amdm(model, x, sigmas, extra_args, callback, disable, host, max_denoise, plan)

    def _member_models(self, model, sigmas, extra_args, subs):
        sharing = _sharing([self.model_patcher] + [g.model_patcher for g in subs])
        denoisers = [MemberModel(model, extra_args, self.model_patcher, *sharing[0])]
        for i, g in enumerate(subs):
            inpaint = comfy.samplers.KSamplerX0Inpaint(g, sigmas)
            inpaint.latent_image, inpaint.noise = model.latent_image, model.noise
            args = {"model_options": g.amdm_model_options, "seed": extra_args.get("seed"),
                    "denoise_mask": extra_args.get("denoise_mask")}
            denoisers.append(MemberModel(inpaint, args, g.model_patcher, *sharing[i + 1]))
        return denoisers

    def run_compose(self, model, x, sigmas, extra_args, callback, disable, host, plan):
        members = self._member_models(model, sigmas, extra_args, self.subs)
        weights = [self.members[0].weight] + [m.weight for m in self.helpers]
        composer = ComposeModel(members, plan.ranges, plan.compose_window, weights, self.aggregation.mode, sigmas,
                                sampler_display_name(host))
        hook = self._progress(callback)
        n = len(sigmas) - 1
        cb = None if hook is None else (lambda d: hook(0, d["i"], d["denoised"], d["x"], d["i"] + 1, n))
        # the run's own sigmas, as the stock KSAMPLER.sample passes them (see HostStepper.run)
        out = host.sampler_function(composer, x, sigmas, extra_args=extra_args, callback=cb, disable=disable,
                                    **host.extra_options)
        trace = Trace(window=EMPTY_WINDOW, steps=n, weights=weights, evaluations=[m.calls for m in members],
                      member_steps=[0] * len(members))
        trace.aggregated_steps = sorted(composer.composed_steps)
        trace.aggregated_sigmas = [float(sigmas[j]) for j in trace.aggregated_steps]
        self.report.trace = trace
        self.report.weight_swaps = sum(m.weight_swaps for m in members)
        return out

    def run_guidance(self, model, x, sigmas, extra_args, callback, disable, host, plan):
        strong, weak = self._member_models(model, sigmas, extra_args, self.subs)
        guided = GuidanceModel(strong, weak, self, self.aggregation, plan.ranges[1], plan.compose_window, sigmas,
                               sampler_display_name(host))
        hook = self._progress(callback)
        n = len(sigmas) - 1
        cb = None if hook is None else (lambda d: hook(0, d["i"], d["denoised"], d["x"], d["i"] + 1, n))
        out = host.sampler_function(guided, x, sigmas, extra_args=extra_args, callback=cb, disable=disable,
                                    **host.extra_options)
        weights = [self.members[0].weight, self.helpers[0].weight]
        trace = Trace(window=EMPTY_WINDOW, steps=n, weights=weights, evaluations=[strong.calls, weak.calls],
                      member_steps=[0, 0])
        trace.aggregated_steps = sorted(guided.guided_steps)
        trace.aggregated_sigmas = [float(sigmas[j]) for j in trace.aggregated_steps]
        self.report.trace = trace
        self.report.guidance = {"counts": dict(guided.counts), "base_alone": guided.base_alone,
                                "strong_cfg": float(self.cfg) if self.aggregation.form == "autoguidance_cfg"
                                else 1.0}
        self.report.weight_swaps = strong.weight_swaps + weak.weight_swaps
        return out

    def run_superpose(self, model, x, sigmas, extra_args, callback, plan):
        """SuperDiff over the whole run: every member with its own CFG, the core's reverse-SDE stepper in
        k-diffusion coordinates (flow members mapped by k_space), noise seeded from the run's seed."""
        members = self._member_models(model, sigmas, extra_args, self.subs)
        ms = self.inner_model.model_sampling
        ks = k_space(state_units(ms), sigmas.detach().cpu())
        last = {}

        def as_denoiser(m, k):
            def den(xh, sigma):
                out = m(xh, sigma, **m.extra_args)
                if k == 0:
                    last["denoised"] = out
                return out
            return ks.denoiser(den)
        hook = self._progress(callback)
        n = len(sigmas) - 1

        def on_step(j, x_k, kappa, ll):
            if hook is not None:
                hook(0, j, last.get("denoised", x_k), ks.from_k(x_k, j + 1), j + 1, n)
        weights = [self.members[0].weight] + [m.weight for m in self.helpers]
        seed = extra_args.get("seed")
        x_k, strace = superpose_sample(
            [as_denoiser(m, k) for k, m in enumerate(members)], ks.k_sigmas.to(x.device), ks.to_k(x, 0),
            noise=seeded_noise(0 if seed is None else int(seed)), mode=self.aggregation.mode,
            temperature=float(self.aggregation.temperature), log_prior=[math.log(w) for w in weights],
            on_step=on_step)
        trace = Trace(window=EMPTY_WINDOW, steps=n, weights=weights, evaluations=[m.calls for m in members],
                      member_steps=[strace.steps] * len(members))
        self.report.trace, self.report.superpose = trace, strace
        self.report.weight_swaps = sum(m.weight_swaps for m in members)
        return ks.from_k(x_k, n)

    def run_amdm(self, model, x, sigmas, extra_args, callback, disable, host, max_denoise, plan):
        ms = self.inner_model.model_sampling
        subs = self.subs if plan.helpers_evaluated else []
        denoisers = self._member_models(model, sigmas, extra_args, subs)
        initial = [x] + [ms.noise_scaling(sigmas[0], self._helper_noise[i].to(x.device, x.dtype), model.latent_image,
                                          max_denoise) for i in range(len(subs))]
        weights = [self.members[0].weight] + [m.weight for m in self.helpers][:len(subs)]
        active = [list(a) for a in plan.activity[:len(subs) + 1]] if subs else None
        deviation = self.deviation.to_core(len(denoisers)) if self.deviation is not None else None
        schedule = None
        if deviation is not None and deviation.target == "reference":
            schedule = DiscreteSchedule.from_sigmas(ms.sigmas)    # discrete: checked before loading
        window = plan.window if subs else None
        rplan = self._rate_plan(sigmas, window, ms) if subs else None
        rated = {} if rplan is None else dict(step_weights=rplan.weights, step_deviation=rplan.deviation_scale,
                                              normalize_step_weights=False)
        # the other modes reach this loop only when the base runs alone: any AMDM settings do then
        agg = self.aggregation if isinstance(self.aggregation, AggregationSettings) else AggregationSettings()
        out, trace = amdm_sample(
            denoisers, sigmas, initial, weights=weights, window=window or EMPTY_WINDOW,
            stepper=HostStepper(host, extra_args.get("seed"), disable_pbar=disable),
            mode=agg.mode, deviation=deviation, step_noise=agg.step_noise,
            schedule=schedule, normalize_weights=agg.normalize_weights, active=active,
            on_progress=self._progress(callback), units=state_units(ms), **rated)
        self.report.trace = trace
        self.report.weight_swaps = sum(d.weight_swaps for d in denoisers)
        return out

    def _rate_plan(self, sigmas, window, ms):
        """Spherical Aggregate's "per noise interval" strength: per-step weights and deviation scales from
        the rate whose base keeps `retained_share` over the window's noise interval (amdm_core.rate_plan);
        None: constant weights."""
        agg = self.aggregation
        if agg.strength != STRENGTH_PER_INTERVAL or window is None or window.empty:
            return None
        interval = rate_interval(agg, sigmas, ms, window)
        if interval is None:
            return None
        units = state_units(ms)
        rate = rate_for_share(agg.retained_share, *interval, units=units)
        return rate_plan(rate, [m.weight for m in self.helpers], sigmas.detach().cpu(), window,
                         interval=interval, units=units)

    def _progress(self, callback):
        if self.progress_hook is not None:
            return self.progress_hook
        if callback is None:
            return None

        def schedule_progress(k, j, denoised, x, done, total):   # the stock callback counts schedule steps
            if k == 0:
                callback({"i": j, "denoised": denoised, "x": x})
        return schedule_progress


def _check_cooperation(members, aggregation) -> None:
    """Refusals of Model Guidance and Superposition that need only the members (before loading)."""
    base, helpers = members[0], [m for m in members[1:] if m.weight > 0]
    if isinstance(aggregation, GuidanceSettings):
        if len(helpers) != 1:
            names = ", ".join(m.label for m in helpers) or "none"
            off = [m.label for m in members[1:] if m.weight == 0]
            raise MemberError(f"Model Guidance takes exactly one helper member, the weak model (a smaller, less "
                              f"trained or base version of the base model); {len(helpers)} helper(s) with weight > 0 "
                              f"are connected ({names})" + (f"; switched off (weight 0): {', '.join(off)}" if off
                                                             else "") + ". Connect one Multi-Model Member.")
        if not base.noise_range.everywhere:
            raise MemberError(f"the {base.label} has a noise range; with Model Guidance the base (strong) model "
                              f"carries the result over the whole schedule: use the guidance window instead.")
    if isinstance(aggregation, SuperposeSettings):
        if base.weight <= 0:
            raise MemberError(f"the {base.label}: 'base_weight' = {base.weight:g}; Superposition reads each member's "
                              f"weight as its prior weight (log w), which needs w > 0. Set it to 1 for equal priors.")
        if not helpers:
            raise MemberError("Superposition needs at least one helper member with weight > 0 (2 to 8 members in "
                              "all); every helper is switched off. Give a helper a positive weight.")
        ranged = [m.label for m in [base, *helpers] if not m.noise_range.everywhere]
        if ranged:
            raise MemberError(f"{', '.join(ranged)}: noise ranges do not apply to Superposition (every member runs at "
                              f"every step of its SDE); reset range_start/range_end to 0 and 1.")


def _check_superpose_sigmas(sigmas, label, units) -> None:
    s = [float(v) for v in sigmas]
    if len(s) < 2:
        return
    if any(b >= a for a, b in zip(s, s[1:])):
        raise ValueError("Superposition needs strictly decreasing sigmas; this schedule repeats a noise level "
                         "(choose another scheduler or step count).")
    if units.family == "flow" and s[0] >= 1.0 and (len(s) < 4 or s[2] <= 0):
        raise ValueError(f"Superposition of flow models ({label}) starting at sigma 1 needs at least 3 steps "
                         f"(its first k-diffusion sigma is extrapolated from the next two): raise 'steps'.")


def _sharing(patchers):
    """Per member: (its model object is shared with another member, and their weight patches differ)."""
    flags = []
    for p in patchers:
        others = [o for o in patchers if o is not p and p.is_clone(o)]
        flags.append((bool(others), any(not p.clone_has_same_weights(o) for o in others)))
    if any(swap for _, swap in flags):
        log.warning("AMDM: members share one checkpoint with different weight patches (e.g. LoRAs); their "
                    "patches are swapped before each of their evaluations inside the window (slower). Load "
                    "the checkpoint once per member to avoid this.")
    return flags


class _AMDMSampler(comfy.samplers.KSAMPLER):
    """Wraps the host SAMPLER: the stock KSAMPLER.sample does noise scaling, inpainting and the
    callback plumbing, and calls our loop instead of the host function directly."""

    def __init__(self, host, guider: Guider_MultiModel):
        super().__init__(self._sample, extra_options={}, inpaint_options=getattr(host, "inpaint_options", {}))
        self.host, self.guider = host, guider
        self._max_denoise = False

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        self._max_denoise = self.max_denoise(model_wrap, sigmas)
        try:
            return super().sample(model_wrap, sigmas, extra_args, callback, noise, latent_image, denoise_mask,
                                  disable_pbar)
        finally:    # the bound method and the guider form a cycle: break it so clones are freed at once
            self.sampler_function = self.guider = None

    @torch.no_grad()
    def _sample(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        return self.guider.run(model, x, sigmas, extra_args or {}, callback, disable, self.host, self._max_denoise)
