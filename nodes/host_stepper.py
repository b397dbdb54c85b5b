"""Plug a host SAMPLER (ComfyUI KSAMPLER) into the core loop as a Stepper.

Inside the window every member advances by calling the host sampler function on a two-sigma
slice, so each step is that sampler's own first step from the member's state: multistep
samplers restart their history there (the history reset the algorithm needs after an
aggregation), stochastic samplers get a fresh noise stream per member and step. After the
window the base member finishes with ONE call over the remaining sigmas, so the sampler runs
its full remaining schedule with its history, exactly as it would in a stock KSampler.
"""
from __future__ import annotations

import inspect

import torch

import comfy.k_diffusion.sampling
import comfy.model_management
import comfy.samplers

from ..amdm_core import StepResult, step_seed
from ..amdm_core import check_step_noise as core_check_step_noise

UNSUPPORTED_IN_WINDOW = ("cfg_pp",)
# Whole-schedule solvers that cannot take one step on a two-sigma slice (uni_pc does not move x,
# dpm_fast/dpm_adaptive only see the end points). Inside the window they take first-order Euler
# steps -- their own first step is first order too -- and run normally after it.
WHOLE_SCHEDULE_ONLY = ("sample_unipc", "sample_unipc_bh2", "dpm_fast_function", "dpm_adaptive_function")


def sampler_function_name(sampler) -> str:
    fn = getattr(sampler, "sampler_function", None)
    return getattr(fn, "__name__", type(sampler).__name__)


def sampler_display_name(sampler) -> str:
    """The name the user picked (`euler_cfg_pp`), not the function's (`sample_euler_cfg_pp`)."""
    name = sampler_function_name(sampler)
    short = name.removeprefix("sample_")
    return short if short in getattr(comfy.samplers, "KSAMPLER_NAMES", ()) else name


CFG_PP_ADVICE = ("it reads one model's unconditional prediction through a post-CFG hook, which is wrong with "
                 "several members inside the aggregation window. Choose a sampler without CFG++ (e.g. euler, "
                 "dpmpp_2m), or move the window/ranges so that only the base member is evaluated")


def check_sampler(sampler, window_empty: bool) -> None:
    """Refusals known from the SAMPLER object alone, before any model is loaded. CFG++ samplers are
    caught here by name; MemberModel refuses any sampler that installs a post-CFG hook inside the
    window however it is named (the behaviour, checked at its first evaluation)."""
    if not hasattr(sampler, "sampler_function"):
        raise ValueError(f"SAMPLER of type {type(sampler).__name__} cannot be driven step by step; use a "
                         f"k-diffusion sampler (KSamplerSelect or one of the Sampler* nodes).")
    name = sampler_function_name(sampler)
    if not window_empty and any(tag in name for tag in UNSUPPORTED_IN_WINDOW):
        raise ValueError(f"sampler '{sampler_display_name(sampler)}' is a CFG++ sampler: {CFG_PP_ADVICE}.")


def post_cfg_count(model_options) -> int:
    return len((model_options or {}).get("sampler_post_cfg_function", ()))


def is_stochastic(sampler_function) -> bool:
    """Samplers that add fresh noise take a noise sampler (or an eta) in k-diffusion."""
    params = inspect.signature(sampler_function).parameters
    return "noise_sampler" in params or "eta" in params


def check_step_noise(sampler, aggregation) -> None:
    """The core's shared-step-noise refusal, before loading: a host step cannot separate its noise."""
    core_check_step_noise(aggregation.mode, aggregation.step_noise, is_stochastic(sampler.sampler_function),
                          separates_noise=False, sampler=sampler_display_name(sampler))


class MemberModel:
    """One member as the k-diffusion `model` argument: KSamplerX0Inpaint plus its own extra_args.

    Every call first honours ComfyUI's cancel button. When this member's model object is shared
    with another member (the same checkpoint connected twice), it is made the current patcher,
    and if their weight patches differ (e.g. different LoRAs) its own patches are put back first
    through the host's own load path (see README: patched clones of one checkpoint).
    """

    def __init__(self, inpaint_model, extra_args: dict, patcher=None, shared_object=False, swap_weights=False):
        self.inpaint_model, self.extra_args = inpaint_model, extra_args
        self.patcher, self.shared_object, self.swap_weights = patcher, shared_object, swap_weights
        self.weight_swaps = 0
        self.calls = 0

    def __getattr__(self, name):            # samplers read .inner_model etc.
        if name == "inpaint_model":
            raise AttributeError(name)
        return getattr(self.inpaint_model, name)

    def __call__(self, x, sigma, **kw):
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.calls += 1
        if self.shared_object:
            self._activate()
        return self.inpaint_model(x, sigma, **kw)

    def _activate(self):
        p = self.patcher
        if self.swap_weights and getattr(p.model, "current_weight_patches_uuid", None) != p.patches_uuid:
            comfy.model_management.load_models_gpu([p])     # the host's own unpatch/patch path
            self.weight_swaps += 1
        if hasattr(p.model, "current_patcher"):
            p.model.current_patcher = p


class RefusePostCfgHook:
    """A member as the sampler sees it inside the window: a post-CFG hook that the sampler adds
    (CFG++ and anything that reads one model's unconditional prediction, whatever its name) is
    refused at its first evaluation."""

    def __init__(self, model, own_model_options, sampler_name: str):
        self.model, self.own, self.sampler_name = model, post_cfg_count(own_model_options), sampler_name

    def __getattr__(self, name):
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    def __call__(self, x, sigma, **kw):
        if post_cfg_count(kw.get("model_options")) > self.own:
            raise ValueError(f"sampler '{self.sampler_name}' installed a post-CFG hook: {CFG_PP_ADVICE}.")
        return self.model(x, sigma, **kw)


class HostStepper:
    separates_noise = False     # a host step is a black box: its mean and noise are not separable

    def __init__(self, sampler, seed, disable_pbar=True):
        self.fn = sampler.sampler_function
        self.name = sampler_display_name(sampler)
        self.extra_options = dict(sampler.extra_options)
        self.step_fn, self.step_options = self.fn, self.extra_options
        if getattr(self.fn, "__name__", "") in WHOLE_SCHEDULE_ONLY:
            self.step_fn, self.step_options = comfy.k_diffusion.sampling.sample_euler, {}
        self.seed = 0 if seed is None else int(seed)
        self.disable = disable_pbar
        self.stochastic = is_stochastic(self.fn)

    def step(self, denoise, x, sigma, sigma_next, index, stream):
        extra = dict(denoise.extra_args)
        extra["seed"] = step_seed(self.seed, index, stream)
        pair = torch.stack([torch.as_tensor(sigma), torch.as_tensor(sigma_next)]).to(x.device)
        guarded = RefusePostCfgHook(denoise, extra.get("model_options"), self.name)
        out = self.step_fn(guarded, x, pair, extra_args=extra, callback=None, disable=True, **self.step_options)
        return StepResult(out, out, float(sigma_next))

    def run(self, denoise, x, sigmas, first_index, stream, callback=None):
        cb = None
        if callback is not None:
            cb = lambda d: callback(first_index + d["i"], d["denoised"], d["x"])  # noqa: E731
        # not a copy, as the stock KSAMPLER.sample: uni_pc writes its last sigma (0 -> 0.001) into the
        # run's sigmas, and the host's inverse_noise_scaling then reads it (flow models divide by 1 - sigma)
        return self.fn(denoise, x, sigmas, extra_args=denoise.extra_args, callback=cb, disable=self.disable,
                       **self.extra_options)
