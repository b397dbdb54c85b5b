"""Spherical Aggregate: how and when the members' states are combined."""
from comfy_api.latest import io

from ..amdm_core import AGGREGATION_MODES, INITIAL_NOISE_POLICIES, STEP_NOISE_POLICIES, WINDOW_UNITS
from .settings import STRENGTHS, AggregationSettings
from .socket_types import CATEGORY, Aggregation


class SphericalAggregate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = AggregationSettings()
        return io.Schema(
            node_id="AMDM_SphericalAggregate",
            display_name="Spherical Aggregate",
            category=CATEGORY,
            description="AMDM's aggregation operator: inside the window, after every member's own sampler step, "
                        "the members' states are combined (in VP units) with weights of sum of squares 1. After "
                        "the window the base model finishes alone and helpers cost nothing.",
            inputs=[
                io.Combo.Input("mode", options=list(AGGREGATION_MODES), default=d.mode,
                               tooltip="spherical: sum w_k x_k exactly as paper and reference code (keeps the norm for "
                                       "independent noise). slerp: angle-aware, also safe when states are alike."),
                io.Combo.Input("window_unit", options=list(WINDOW_UNITS), default=d.window_unit,
                               display_name="window unit",
                               tooltip="percent: of the model's noise range like ComfyUI's start/end percent (0 = pure "
                                       "noise); keeps its meaning across step counts and schedulers. sigma: noise "
                                       "levels. steps: step indices of this run, as the reference code."),
                io.Float.Input("window_start", default=d.window_start, min=0.0, max=10000.0, step=0.001,
                               display_name="window start",
                               tooltip="Where aggregation starts (percent 0..1, the higher sigma, or a step index). "
                                       "Step 0 never aggregates: the first states to combine exist after it."),
                io.Float.Input("window_end", default=d.window_end, min=0.0, max=10000.0, step=0.001,
                               display_name="window end",
                               tooltip="Where aggregation ends, inclusive (percent, the lower sigma, or a step index). "
                                       "Reference code: steps 1..3 of 20 ~ percent 0..0.2."),
                io.Combo.Input("initial_noise", options=list(INITIAL_NOISE_POLICIES), default=d.initial_noise,
                               display_name="initial noise",
                               tooltip="independent: each helper starts from its own noise (the reference code; needed "
                                       "by 'spherical'). shared: all start from the seed's noise (use with slerp)."),
                io.Combo.Input("step_noise", options=list(STEP_NOISE_POLICIES), default=d.step_noise,
                               display_name="step noise",
                               tooltip="Stochastic samplers (ancestral, SDE) inside the window: independent draws per "
                                       "member keep the noise variance under spherical weights; shared needs slerp."),
                io.Boolean.Input("normalize_weights", default=d.normalize_weights,
                                 display_name="normalize weights",
                                 tooltip="Scale member weights to sum of squares 1. Off reproduces the reference code's "
                                         "3-model weights, which are not unit norm."),
                # appended (optional): older workflows load unchanged and keep "per step"
                io.Combo.Input("strength", options=list(STRENGTHS), default=d.strength, optional=True,
                               tooltip="per step: the member weights at every window step (the paper; more steps in "
                                       "the window pull harder). per noise interval: the same pull at every step "
                                       "count: the base's mix of its own and the helpers' states follows the part "
                                       "of the window's log-sigma interval covered so far (sum of squares 1) and "
                                       "keeps 'retained share' over the window; an absolute deviation step is "
                                       "scaled to each step's share of the pull (base weight not used; helpers' "
                                       "weights set their split)."),
                io.Float.Input("retained_share", default=d.retained_share, min=0.001, max=1.0, step=0.001,
                               optional=True, display_name="retained share",
                               tooltip="per noise interval only: the share of its angle to the helpers the base keeps "
                                       "over the whole window (1 = no pull; 0.5 = half way; smaller pulls harder)."),
            ],
            outputs=[Aggregation.Output(display_name="aggregation", tooltip="Connect to a Multi-Model Sampler or Guider.")],
        )

    @classmethod
    def execute(cls, mode, window_unit, window_start, window_end, initial_noise, step_noise,
                normalize_weights, strength="per step", retained_share=0.5) -> io.NodeOutput:
        return io.NodeOutput(AggregationSettings(mode, window_unit, float(window_start), float(window_end),
                                                 initial_noise, step_noise, bool(normalize_weights), strength,
                                                 float(retained_share)))
