"""Compose Predictions: combine the active members' predictions at one shared state (not AMDM)."""
from comfy_api.latest import io

from ..amdm_core import COMPOSE_MODES, WINDOW_UNITS
from .settings import ComposeSettings
from .socket_types import CATEGORY, Aggregation


class ComposePredictions(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = ComposeSettings()
        return io.Schema(
            node_id="AMDM_ComposePredictions",
            display_name="Compose Predictions",
            category=CATEGORY,
            description="The simpler cooperation modes, in place of Spherical Aggregate: ONE shared trajectory; at "
                        "every model evaluation the active members' predictions are combined (composable diffusion, "
                        "or a weighted average of their CFG results). With member noise ranges this is also a "
                        "sequential handoff in one pass. Works with every sampler.",
            inputs=[
                io.Combo.Input("mode", options=list(COMPOSE_MODES), default=d.mode,
                               tooltip="composable: mean of the members' unconditional predictions plus each member's "
                                       "weight x its own guidance (cfg x (cond - uncond)); use weight 1 for plain "
                                       "composable diffusion. average: weighted mean of the members' CFG results."),
                io.Combo.Input("window_unit", options=list(WINDOW_UNITS), default=d.window_unit,
                               display_name="window unit",
                               tooltip="Unit of the composition window: percent of the noise range (0 = pure noise), "
                                       "sigma, or steps of this run."),
                io.Float.Input("window_start", default=d.window_start, min=0.0, max=10000.0, step=0.001,
                               display_name="window start",
                               tooltip="Where helpers start being composed in (percent, the higher sigma, or a step)."),
                io.Float.Input("window_end", default=d.window_end, min=0.0, max=10000.0, step=0.001,
                               display_name="window end",
                               tooltip="Where helpers stop (percent, the lower sigma, or a step, inclusive). Outside "
                                       "the window only the base member (within its own range) is evaluated."),
            ],
            outputs=[Aggregation.Output(display_name="aggregation",
                                        tooltip="Connect to the 'aggregation' input of a Multi-Model Sampler or Guider.")],
        )

    @classmethod
    def execute(cls, mode, window_unit, window_start, window_end) -> io.NodeOutput:
        return io.NodeOutput(ComposeSettings(mode, window_unit, float(window_start), float(window_end)))
