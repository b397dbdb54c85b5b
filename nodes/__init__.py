"""ComfyUI glue for AMDM: thin V3 nodes that translate host types and call amdm_core."""
from comfy_api.latest import ComfyExtension, io

from .node_aggregate import SphericalAggregate
from .node_compose import ComposePredictions
from .node_deviation import DeviationOptimize
from .node_guidance import ModelGuidance
from .node_guider import MultiModelGuider
from .node_member import MultiModelMember
from .node_sampler import MultiModelSampler
from .node_superpose import Superposition
from .node_sweep import MultiModelSweep

NODES = [MultiModelSampler, MultiModelMember, SphericalAggregate, DeviationOptimize, MultiModelGuider,
         ComposePredictions, MultiModelSweep, ModelGuidance, Superposition]


class AMDMExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> AMDMExtension:
    return AMDMExtension()
