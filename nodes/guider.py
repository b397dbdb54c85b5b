"""Guider_MultiModel: a CFGGuider that runs AMDM (or a composition) over several members in one
sampling pass.

Call path (ComfyUI's own frames in brackets):
  Guider_MultiModel.sample  -> plan_run, refusals before loading, helpers' host bookkeeping
    [CFGGuider.sample -> outer_sample (loads base + helpers) -> inner_sample]
  Guider_MultiModel.inner_sample -> the helpers' conds -> [CFGGuider.inner_sample]
    [-> KSAMPLER.sample: noise scaling, inpainting] -> _AMDMSampler._sample -> Guider_MultiModel.run
  run -> run_amdm -> amdm_core.amdm_sample (steps every member, aggregates: spherical_aggregate)
      -> run_compose -> the host sampler over ComposeModel

The base member goes through ComfyUI's unchanged CFGGuider path (wrappers, hooks, ControlNets
keep working for it). Helpers are private clones that ride along as additional models of the
base clone, so ONE load_models_gpu call loads every member; the per-model bookkeeping the stock
guider does is repeated for each helper by host_mirror.py. Inputs are never mutated.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

import comfy.samplers

from ..amdm_core import EMPTY_WINDOW, DiscreteSchedule, Trace, amdm_sample, helper_initial_noise
from .compose_model import ComposeModel
from .host_mirror import check_multigpu, enter_helper, exit_helper, helper_extra_models, prepare_helper_run
from .host_stepper import HostStepper, MemberModel, check_sampler, check_step_noise, sampler_display_name
from .members import Member, MemberError, check_compatible, state_units
from .run_plan import RunPlan, plan_run
from .settings import AggregationSettings, ComposeSettings, DeviationSettings

HELPERS_KEY = "amdm_helpers"
log = logging.getLogger("amdm")


@dataclass
class RunReport:
    """What one sample() call did; the summary is built from it."""
    plan: RunPlan
    trace: Trace | None = None
    seconds: float = 0.0
    weight_swaps: int = 0


class Guider_MultiModel(comfy.samplers.CFGGuider):
    def __init__(self, members: list[Member], aggregation: AggregationSettings | ComposeSettings | None = None,
                 deviation: DeviationSettings | None = None):
        check_compatible(members)
        base = members[0]
        aggregation = aggregation or AggregationSettings()
        if not isinstance(aggregation, (AggregationSettings, ComposeSettings)):
            raise ValueError("'aggregation' must come from a Spherical Aggregate or Compose Predictions node.")
        if isinstance(aggregation, AggregationSettings) and not base.noise_range.everywhere:
            raise MemberError(f"the {base.label} has a noise range; with Spherical Aggregate (AMDM) the base model "
                              f"carries the result over the whole schedule. Use Compose Predictions for handoffs.")
        if deviation is not None and not isinstance(deviation, DeviationSettings):
            raise ValueError("'deviation' must come from a Deviation Optimize node.")
        super().__init__(base.model.clone())        # private: additional models never touch the user's MODEL
        self.set_conds(base.positive, base.negative)
        self.set_cfg(base.cfg)
        self.members = list(members)
        self.aggregation = aggregation
        self.composing = isinstance(aggregation, ComposeSettings)
        self.deviation = None if self.composing else deviation
        # a helper with weight 0 contributes nothing: it is neither loaded nor evaluated
        self.helpers = [m for m in members[1:] if m.weight > 0]
        self.subs = []
        for m in self.helpers:
            g = comfy.samplers.CFGGuider(m.model.clone())
            g.set_conds(m.positive, m.negative)     # the host's own inner_set_conds (0.33: non-dynamic delegate)
            g.set_cfg(m.cfg)
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
        check_sampler(sampler, window_empty=not active)       # before any model is loaded
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
        out, trace = amdm_sample(
            denoisers, sigmas, initial, weights=weights, window=window or EMPTY_WINDOW,
            stepper=HostStepper(host, extra_args.get("seed"), disable_pbar=disable),
            mode=self.aggregation.mode, deviation=deviation, step_noise=self.aggregation.step_noise,
            schedule=schedule, normalize_weights=self.aggregation.normalize_weights, active=active,
            on_progress=self._progress(callback), units=state_units(ms))
        self.report.trace = trace
        self.report.weight_swaps = sum(d.weight_swaps for d in denoisers)
        return out

    def _progress(self, callback):
        if self.progress_hook is not None:
            return self.progress_hook
        if callback is None:
            return None

        def schedule_progress(k, j, denoised, x, done, total):   # the stock callback counts schedule steps
            if k == 0:
                callback({"i": j, "denoised": denoised, "x": x})
        return schedule_progress


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
