"""Multi-Model Sweep: one seed, a small grid of settings, a labelled image grid to pick from."""
from __future__ import annotations

import dataclasses
import json
import logging

import torch

import comfy.model_management
import comfy.samplers
from comfy_api.latest import io, ui

from .members import MemberError, node_ref
from .run import build_guider, check_run_inputs, run_guider, run_sigmas
from .settings import AggregationSettings
from .socket_types import CATEGORY, base_member_inputs, config_inputs
from .summary import summary_text
from .sweep import SWEEP_PARAMETERS, configurations, labelled_grid, parse_values

log = logging.getLogger("amdm")


class MultiModelSweep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AMDM_MultiModelSweep",
            display_name="Multi-Model Sweep",
            category=CATEGORY,
            description="Runs the Multi-Model Sampler over a small grid of settings (window ends, weights, deviation "
                        "step, operator) for one seed and returns a labelled image grid and the settings, so you can "
                        "pick per prompt. The cost (model evaluations) is computed and logged before it starts; "
                        "cancel stops it between and inside runs.",
            inputs=base_member_inputs() + [
                io.Latent.Input("latent_image", tooltip="The latent to denoise."),
                io.Vae.Input("vae", tooltip="VAE used to decode each result for the grid."),
                io.Int.Input("seed", default=0, min=0, max=0xffffffffffffffff, control_after_generate=True,
                             tooltip="One seed for every configuration."),
                io.Int.Input("steps", default=20, min=1, max=10000, tooltip="Sampling steps."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, display_name="base cfg",
                               tooltip="The base model's cfg."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, tooltip="Any ComfyUI sampler."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, tooltip="Any ComfyUI scheduler."),
                io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="Amount of denoising."),
                io.Float.Input("base_weight", default=0.5, min=0.0, max=100.0, step=0.001, display_name="base weight",
                               tooltip="The base model's weight (unless swept)."),
                io.Combo.Input("parameter", options=list(SWEEP_PARAMETERS), default="window_end",
                               tooltip="What to vary: window_end/window_start (in the aggregation's window unit), "
                                       "base_weight, helper_weight (multiplies every helper's weight), deviation_step, "
                                       "mode (spherical, slerp, composable, average)."),
                io.String.Input("values", default="0.1, 0.2, 0.3",
                                tooltip="Comma-separated values for 'parameter'."),
                io.Combo.Input("parameter_2", options=["none", *SWEEP_PARAMETERS], default="none", display_name="parameter 2",
                               tooltip="Optional second parameter: the grid gets one row per value of it."),
                io.String.Input("values_2", default="", display_name="values 2",
                                tooltip="Comma-separated values for 'parameter_2'."),
            ] + config_inputs(),
            outputs=[
                io.Image.Output(display_name="grid", tooltip="Labelled grid, one tile per configuration."),
                io.String.Output(display_name="settings", tooltip="JSON list: each configuration's label and run summary."),
                io.Latent.Output(display_name="latents", tooltip="All results as one latent batch, in grid order."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, positive, negative, members, latent_image, vae, seed, steps, cfg, sampler_name, scheduler,
                denoise, base_weight, parameter, values, parameter_2, values_2, aggregation=None,
                deviation=None, base_range_start=0.0, base_range_end=1.0, base_range_unit="percent") -> io.NodeOutput:
        node = node_ref(cls.hidden, "Multi-Model Sweep")
        if parameter_2 != "none" and parameter_2 == parameter:
            raise ValueError(f"'parameter_2' is the same as 'parameter' ({parameter}); choose another or 'none'")
        vals = parse_values(parameter, values)
        vals2 = parse_values(parameter_2, values_2, "values_2") if parameter_2 != "none" else []
        if vae is None or not hasattr(vae, "decode"):
            raise ValueError("'vae' is not a VAE; connect a VAE (e.g. the checkpoint loader's VAE output) to 'vae'.")
        base_agg = aggregation if aggregation is not None else AggregationSettings()
        try:
            configs = configurations(parameter, vals, parameter_2, vals2, base_agg, deviation, base_weight)
        except ValueError as e:
            raise ValueError(f"Multi-Model Sweep: {e}") from None
        guiders = []
        for c in configs:          # build and validate every configuration before running any
            helpers = tuple(dataclasses.replace(m, weight=m.weight * c.helper_scale) for m in members)
            try:
                guiders.append(build_guider(node, model, positive, negative, cfg, c.base_weight, helpers,
                                            c.aggregation, c.deviation, base_range_start, base_range_end,
                                            base_range_unit))
            except ValueError as e:
                raise MemberError(f"configuration '{c.label}': {e}") from None
        check_run_inputs(model, latent_image, steps, sampler_name, scheduler, denoise)
        sigmas = run_sigmas(model, steps, sampler_name, scheduler, denoise)
        costs = [g.plan(sigmas).planned_member_steps for g in guiders]
        log.info("Multi-Model Sweep: %d configurations, about %d model evaluations in total (%s)",
                 len(configs), sum(costs), ", ".join(f"{c.label}: {n}" for c, n in zip(configs, costs)))
        latents, images, report = [], [], []
        for c, g, cost in zip(configs, guiders, costs):
            comfy.model_management.throw_exception_if_processing_interrupted()
            out, summary = run_guider(g, model, latent_image, seed, steps, sampler_name, scheduler, denoise)
            latents.append(out["samples"])
            images.append(vae.decode(out["samples"][:1]))
            report.append({"label": c.label, "planned_evaluations": cost, "summary": summary})
        columns = len(vals)
        grid = labelled_grid(images, [c.label for c in configs], columns)
        settings = json.dumps(report, sort_keys=True)
        text = f"Sweep of {len(configs)} configurations, {sum(costs)} planned evaluations\n" + "\n".join(
            f"{r['label']}: {summary_text(r['summary']).splitlines()[0]}" for r in report)
        return io.NodeOutput(grid, settings, {"samples": torch.cat(latents)},
                             ui={"text": [text], **ui.PreviewImage(grid, cls=cls).as_dict()})
