"""Multi-Model Sampler: a KSampler whose model is aggregated with helper members (AMDM)."""
from __future__ import annotations

import logging
import math

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from .guider import Guider_MultiModel
from .host_mirror import fix_empty_latent, strip_latent_hints
from .members import Member, check_member_values, member_label
from .settings import DeviationSettings
from .node_member import member_chain, member_range
from .socket_types import CATEGORY, Aggregation, DeviationConfig, Members, range_inputs
from .summary import build_summary, summary_json, summary_text

log = logging.getLogger("amdm")


def base_member_inputs():
    """The base member's inputs, shared by the sampler and the guider (same names, same order)."""
    return [
        io.Model.Input("model", display_name="base model",
                       tooltip="The specified (base) model: the one whose result you get. Helpers are aggregated into it."),
        io.Conditioning.Input("positive", display_name="base positive", tooltip="The base model's positive conditioning."),
        io.Conditioning.Input("negative", display_name="base negative", tooltip="The base model's negative conditioning."),
        # "helper members": the base is a member too (2 to 8 members), but this socket takes the helpers only
        Members.Input("members", display_name="helper members",
                      tooltip="Helper members: the output of a Multi-Model Member chain (1 to 7 helpers)."),
    ]


def config_inputs():
    return [
        Aggregation.Input("aggregation", optional=True,
                          tooltip="From Spherical Aggregate (AMDM) or Compose Predictions. Unconnected: AMDM, spherical, "
                                  "percent window 0-0.2, independent noise."),
        DeviationConfig.Input("deviation", optional=True,
                              tooltip="From Deviation Optimize. Unconnected: faithful step 0.35 on the base model. "
                                      "Not used by Compose Predictions."),
    ] + range_inputs("base_")


def build_guider(hidden_id, model, positive, negative, cfg, base_weight, members, aggregation, deviation,
                 range_start=0.0, range_end=1.0, range_unit="percent"):
    label = member_label(0, hidden_id)
    check_member_values(label, model, positive, negative, cfg, base_weight, weight_name="base_weight")
    members = member_chain(members, "members", allow_none=False)
    base = Member(model, positive, negative, float(cfg), float(base_weight), label,
                  member_range(label, range_unit, range_start, range_end, prefix="base_"))
    if base_weight == 0 and all(m.weight == 0 for m in members):
        raise ValueError(f"{label}: 'base_weight' and every helper weight are 0; give at least one a positive weight.")
    return Guider_MultiModel([base, *members], aggregation, deviation if deviation is not None else DeviationSettings())


class MultiModelSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AMDM_MultiModelSampler",
            display_name="Multi-Model Sampler",
            category=CATEGORY,
            description="AMDM (Aggregation of Multiple Diffusion Models): the base model and its helpers each keep "
                        "their own trajectory; in the early window their states are spherically aggregated after "
                        "every step and pulled back by deviation optimization, then the base finishes alone. Works "
                        "with every ComfyUI sampler and scheduler. With helper weights 0 it equals KSampler.",
            inputs=base_member_inputs() + [
                io.Latent.Input("latent_image", tooltip="The latent to denoise (empty latent, or an encoded image with denoise < 1)."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="Seed of the base noise; helpers' independent noises continue the same generator."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, display_name="base cfg",
                               tooltip="The base model's classifier-free guidance scale (each helper has its own)."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS,
                               tooltip="Any ComfyUI sampler. Inside the window each member takes this sampler's "
                                       "single steps (multistep history restarts); CFG++ samplers only outside it."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="Any ComfyUI scheduler."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="Amount of denoising, as in KSampler (img2img below 1)."),
                io.Float.Input("base_weight", default=0.5, min=0.0, max=100.0, step=0.001, display_name="base weight",
                               tooltip="The base model's aggregation weight (paper's omega = 0.5 with a helper at 0.866). "
                                       "Weights are scaled to sum of squares 1."),
            ] + config_inputs(),
            outputs=[
                io.Latent.Output(display_name="LATENT", tooltip="The base model's denoised latent."),
                io.String.Output(display_name="summary", tooltip="Run summary: window in steps and sigmas, evaluations per member, time."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, positive, negative, members, latent_image, seed, steps, cfg, sampler_name, scheduler,
                denoise, base_weight, aggregation=None, deviation=None, base_range_start=0.0, base_range_end=1.0,
                base_range_unit="percent") -> io.NodeOutput:
        hidden_id = cls.hidden.unique_id if cls.hidden else None
        guider = build_guider(hidden_id, model, positive, negative, cfg, base_weight, members, aggregation, deviation,
                              base_range_start, base_range_end, base_range_unit)
        check_run_inputs(model, latent_image, steps, sampler_name, scheduler, denoise)
        out, summary = run_guider(guider, model, latent_image, seed, steps, sampler_name, scheduler, denoise)
        text = summary_text(summary)
        log.info(text)
        return io.NodeOutput(out, text, ui={"text": [text], "amdm_summary": [summary_json(summary)]})


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
    return out, build_summary(guider, sigmas, sampler_name, scheduler)
