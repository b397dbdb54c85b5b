"""The pack's own socket types (defined once: io.Custom returns a new class per call)."""
from comfy_api.latest import io

from .settings import RANGE_UNITS

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
