"""Deviation Optimize: the fixed-length step from the aggregate toward each member's own mean."""
from comfy_api.latest import io

from ..amdm_core import DEVIATION_MODES, MU_TARGETS, NODE_STEP_UNITS, OPTIMISED_MEMBERS
from .settings import DeviationSettings
from .socket_types import CATEGORY, DeviationConfig


class DeviationOptimize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = DeviationSettings()
        return io.Schema(
            node_id="AMDM_DeviationOptimize",
            display_name="Deviation Optimize",
            category=CATEGORY,
            description="AMDM's deviation optimization: after each aggregation, move the aggregate one normalised "
                        "step of fixed length toward the member's own predicted mean, pulling it back to where "
                        "that model expects its state. Step sizes are resolution-independent.",
            inputs=[
                io.Float.Input("step", default=round(d.step, 4), min=0.0, max=10.0, step=0.0001,
                               tooltip="Step for the base model, per sqrt(n) (n = latent elements): 0.35 is the "
                                       "reference code's p = 45 at 512x512, 0.43 its p = 55. 0 = no deviation step."),
                io.Combo.Input("mode", options=list(DEVIATION_MODES), default=d.mode,
                               tooltip="absolute: fixed length (reference; may pass the mean). clamped: never past the "
                                       "mean. relative: a fraction 0..1 of the distance."),
                io.Combo.Input("target", options=list(MU_TARGETS), default=d.target,
                               tooltip="faithful: the member's own un-aggregated next state (the paper's mean). "
                                       "reference: the reference code's one-step-lagged formula."),
                io.Combo.Input("members", options=list(OPTIMISED_MEMBERS), default=d.members,
                               display_name="optimised members",
                               tooltip="base: only the base model is optimised, helpers keep their own trajectories "
                                       "(paper). all: every member moves toward its own mean from the aggregate (code)."),
                io.Float.Input("helper_step", default=round(d.helper_step, 4), min=0.0, max=10.0, step=0.0001,
                               display_name="helper step",
                               tooltip="Step for the helpers when 'members' is all (same units as 'step')."),
                # appended last and optional: saved workflows keep their inputs and the old behaviour
                io.Combo.Input("step_unit", options=list(NODE_STEP_UNITS), default=d.step_unit, optional=True,
                               display_name="step unit",
                               tooltip="Unit of 'step' and 'helper_step'. per_sqrt_n: per sqrt(n), n = latent "
                                       "elements, the same effect at every resolution (0.35 = the reference code's "
                                       "p = 45 at 512x512 only). per_sqrt_reference: the reference code's absolute "
                                       "p / 128, the same distance at every resolution (0.3516 = p 45, 0.4297 = "
                                       "p 55). Not used in relative mode."),
            ],
            outputs=[DeviationConfig.Output(display_name="deviation", tooltip="Connect to a Multi-Model Sampler or Guider.")],
        )

    @classmethod
    def execute(cls, step, mode, target, members, helper_step, step_unit="per_sqrt_n") -> io.NodeOutput:
        return io.NodeOutput(DeviationSettings(float(step), float(helper_step), mode, target, members, step_unit))
