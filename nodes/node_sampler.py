"""Multi-Model Sampler: a KSampler whose model is aggregated with helper members (AMDM)."""
from __future__ import annotations

import logging

import comfy.samplers
from comfy_api.latest import io

from .members import node_ref
from .run import build_guider, check_run_inputs, run_guider
from .socket_types import CATEGORY, base_member_inputs, config_inputs
from .summary import summary_json, summary_text

log = logging.getLogger("amdm")


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
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, positive, negative, members, latent_image, seed, steps, cfg, sampler_name, scheduler,
                denoise, base_weight, aggregation=None, deviation=None, base_range_start=0.0, base_range_end=1.0,
                base_range_unit="percent") -> io.NodeOutput:
        node = node_ref(cls.hidden, "Multi-Model Sampler")
        guider = build_guider(node, model, positive, negative, cfg, base_weight, members, aggregation, deviation,
                              base_range_start, base_range_end, base_range_unit)
        check_run_inputs(model, latent_image, steps, sampler_name, scheduler, denoise)
        out, summary = run_guider(guider, model, latent_image, seed, steps, sampler_name, scheduler, denoise)
        text = summary_text(summary)
        log.info(text)
        return io.NodeOutput(out, text, ui={"text": [text], "amdm_summary": [summary_json(summary)]})


