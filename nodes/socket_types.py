"""The pack's own socket types (defined once: io.Custom returns a new class per call)."""
from comfy_api.latest import io

Members = io.Custom("AMDM_MEMBERS")
Aggregation = io.Custom("AMDM_AGGREGATION")
DeviationConfig = io.Custom("AMDM_DEVIATION")

CATEGORY = "sampling/amdm"
