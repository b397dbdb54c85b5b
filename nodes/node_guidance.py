"""Model Guidance (autoguidance): the base (strong) model guided away from one weak helper."""
from comfy_api.latest import io

from ..amdm_core import GUIDANCE_FORMS, WINDOW_UNITS
from .settings import GuidanceSettings
from .socket_types import CATEGORY, Aggregation


class ModelGuidance(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = GuidanceSettings()
        return io.Schema(
            node_id="AMDM_ModelGuidance",
            display_name="Model Guidance (Autoguidance)",
            category=CATEGORY,
            description="Autoguidance (Karras et al. 2024), in place of Spherical Aggregate: the base model is the "
                        "STRONG model (its result is what you get), the one helper member the WEAK model (a smaller, "
                        "less trained or base version of it: weak-to-strong). One shared trajectory; at every "
                        "evaluation in the window both are evaluated at the same state and the strong prediction is "
                        "pushed away from the weak one by w. Outside the window the base runs alone with its own "
                        "CFG. Works with every sampler and scheduler.",
            inputs=[
                io.Combo.Input("form", options=list(GUIDANCE_FORMS), default=d.form,
                               tooltip="autoguidance: weak + w x (strong - weak), both on their positive prompt, no "
                                       "CFG (2 evaluations per step). autoguidance_cfg: the base's own CFG plus "
                                       "(w - 1) x (strong - weak) (3 evaluations: strong cond, strong uncond, weak "
                                       "cond; the base cfg is used)."),
                io.Float.Input("w", default=d.w, min=0.0, max=100.0, step=0.01, display_name="guidance weight",
                               tooltip="Guidance weight w: 1 = the strong (base) model alone, bit for bit; the paper "
                                       "uses about 2 to 3; 0 = the weak model alone."),
                io.Combo.Input("window_unit", options=list(WINDOW_UNITS), default=d.window_unit,
                               display_name="window unit",
                               tooltip="Unit of the guidance window: percent of the noise range (0 = pure noise), "
                                       "sigma, or steps of this run."),
                io.Float.Input("window_start", default=d.window_start, min=0.0, max=10000.0, step=0.001,
                               display_name="window start",
                               tooltip="Where guidance starts (percent, the higher sigma, or a step)."),
                io.Float.Input("window_end", default=d.window_end, min=0.0, max=10000.0, step=0.001,
                               display_name="window end",
                               tooltip="Where guidance ends (percent, the lower sigma, or a step, inclusive). Outside "
                                       "the window the base model runs alone with its own CFG and the weak model "
                                       "costs nothing."),
            ],
            outputs=[Aggregation.Output(display_name="aggregation",
                                        tooltip="Connect to the 'aggregation' input of a Multi-Model Sampler or Guider "
                                                "(the base = strong model, exactly one helper member = weak model).")],
        )

    @classmethod
    def execute(cls, form, w, window_unit, window_start, window_end) -> io.NodeOutput:
        return io.NodeOutput(GuidanceSettings(form, float(w), window_unit, float(window_start), float(window_end)))
