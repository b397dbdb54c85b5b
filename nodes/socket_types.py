"""The pack's own socket types (defined once: io.Custom returns a new class per call) and the
input groups several nodes share (same names, same order: a public contract)."""
from comfy_api.latest import io

from ..amdm_core import RANGE_UNITS

Members = io.Custom("AMDM_MEMBERS")
Aggregation = io.Custom("AMDM_AGGREGATION")
DeviationConfig = io.Custom("AMDM_DEVIATION")

CATEGORY = "sampling/amdm"


def range_inputs(prefix: str = ""):
    """A member's active noise range; appended (optional) after the original inputs."""
    label = prefix.replace("_", " ")
    return [
        io.Float.Input(f"{prefix}range_start", default=0.0, min=0.0, max=10000.0, step=0.001, optional=True,
                       display_name=f"{label}range start",
                        tooltip="Where this member becomes active: percent of the noise range (0 = pure noise) or "
                                "the higher sigma. Helpers cost evaluations only while active."),
        io.Float.Input(f"{prefix}range_end", default=1.0, min=0.0, max=10000.0, step=0.001, optional=True,
                       display_name=f"{label}range end",
                        tooltip="Where this member stops being active: percent (1 = the end) or the lower sigma. "
                                "Adjacent ranges of two members make a handoff (with Compose Predictions)."),
        io.Combo.Input(f"{prefix}range_unit", options=list(RANGE_UNITS), default="percent", optional=True,
                       display_name=f"{label}range unit",
                        tooltip="percent of the noise range (like ComfyUI's start/end percent) or sigma."),
    ]


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
                          tooltip="From Spherical Aggregate (AMDM), Compose Predictions, Model Guidance or "
                                  "Superposition. Unconnected: AMDM, spherical, percent window 0-0.2, independent noise."),
        DeviationConfig.Input("deviation", optional=True,
                              tooltip="From Deviation Optimize. Unconnected: faithful step 0.35 on the base model. "
                                      "Not used by Compose Predictions."),
    ] + range_inputs("base_")
