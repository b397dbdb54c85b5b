"""Running the Multi-Model guider as the KSampler node runs its model, for the sampler and sweep
nodes: build the guider from the node inputs, check the run's own inputs before loading, sample.

Call path from a node: MultiModelSampler.execute -> build_guider, check_run_inputs -> run_guider
-> Guider_MultiModel.sample (nodes/guider.py; its docstring goes on to amdm_core.amdm_sample and
spherical_aggregate).
"""
from __future__ import annotations

import math

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from .guider import Guider_MultiModel
from .host_mirror import fix_empty_latent, strip_latent_hints
from .members import Member, check_member_values, member_chain, member_label, member_range
from .settings import DeviationSettings
from .summary import build_summary


def build_guider(node, model, positive, negative, cfg, base_weight, members, aggregation, deviation,
                 range_start=0.0, range_end=1.0, range_unit="percent"):
    label = member_label(0, node)
    check_member_values(label, model, positive, negative, cfg, base_weight, weight_name="base_weight")
    members = member_chain(members, "members", allow_none=False)
    base = Member(model, positive, negative, float(cfg), float(base_weight), label,
                  member_range(label, range_unit, range_start, range_end, prefix="base_"))
    if base_weight == 0 and all(m.weight == 0 for m in members):
        raise ValueError(f"{label}: 'base_weight' and every helper weight are 0; give at least one a positive weight.")
    return Guider_MultiModel([base, *members], aggregation, deviation if deviation is not None else DeviationSettings())


def check_run_inputs(model, latent_image, steps, sampler_name, scheduler, denoise) -> None:
    """The run's own inputs, checked before anything is loaded (ComfyUI 0.3.75 does not check V3
    combo options over HTTP, and NaN passes its range checks)."""
    if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
        raise ValueError(f"'sampler_name' = {sampler_name!r} is not a sampler of this ComfyUI; choose one of "
                         f"{', '.join(comfy.samplers.KSampler.SAMPLERS[:8])}, ...")
    if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
        raise ValueError(f"'scheduler' = {scheduler!r} is not a scheduler of this ComfyUI; choose one of "
                         f"{', '.join(comfy.samplers.KSampler.SCHEDULERS)}")
    try:
        d = float(denoise)
    except (TypeError, ValueError):
        raise ValueError(f"'denoise' = {denoise!r} is not a number") from None
    if not math.isfinite(d) or not 0.0 <= d <= 1.0:
        raise ValueError(f"'denoise' = {denoise} must be a number from 0 to 1")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"'steps' = {steps!r} must be a whole number >= 1")
    check_latent(model, latent_image)


def check_latent(model, latent_image) -> None:
    if not isinstance(latent_image, dict) or not torch.is_tensor(latent_image.get("samples")):
        raise ValueError("'latent_image' is not a LATENT; connect an Empty Latent Image or VAE Encode output.")
    x = latent_image["samples"]
    lf = model.get_model_object("latent_format")
    dims = getattr(lf, "latent_dimensions", 2)
    if x.ndim != dims + 2 and not (dims == 3 and x.ndim == 4):
        raise ValueError(f"'latent_image' has {x.ndim} dimensions {tuple(x.shape)}; the base model expects "
                         f"[batch, channels, height, width] latents. Use a latent made for this model family.")
    if x.shape[0] < 1:
        raise ValueError("'latent_image' has batch size 0.")
    if x.shape[1] != lf.latent_channels and torch.count_nonzero(x) > 0:
        raise ValueError(f"'latent_image' has {x.shape[1]} channels, the base model's latent format "
                         f"{type(lf).__name__} has {lf.latent_channels}: encode the image with this model's VAE.")
    bi = latent_image.get("batch_index")
    if bi is not None and len(bi) != x.shape[0]:
        raise ValueError(f"'latent_image' has batch {x.shape[0]} but a batch_index of {len(bi)} entries.")


def run_sigmas(model, steps, sampler_name, scheduler, denoise):
    """The stock KSampler's sigmas (incl. its discard-penultimate rule and denoise < 1 handling)."""
    return comfy.samplers.KSampler(model, steps=steps, device=model.load_device, sampler=sampler_name,
                                   scheduler=scheduler, denoise=denoise, model_options=model.model_options).sigmas


def run_guider(guider, model, latent_image, seed, steps, sampler_name, scheduler, denoise):
    """What the KSampler node does, with the Multi-Model guider: returns (LATENT, summary dict).
    The caller has checked the inputs (check_run_inputs)."""
    latent = latent_image.copy()
    samples = fix_empty_latent(model, latent)
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    sigmas = run_sigmas(model, steps, sampler_name, scheduler, denoise)
    # one monotonic bar over every member step (the loop passes its planned total), with
    # previews of whichever member just stepped
    preview = latent_preview.prepare_callback(model, max(1, len(sigmas) - 1))
    guider.progress_hook = lambda k, j, denoised, x, done, planned: preview(done - 1, denoised, x, planned)
    out_samples = guider.sample(noise, samples, comfy.samplers.sampler_object(sampler_name), sigmas,
                                denoise_mask=latent.get("noise_mask"), callback=None,
                                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed)
    out = strip_latent_hints(latent)
    out["samples"] = out_samples.to(comfy.model_management.intermediate_device())
    return out, build_summary(guider, guider.report, sigmas, sampler_name, scheduler)
