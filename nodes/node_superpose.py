"""Superposition (SuperDiff): the members' densities combined as OR (mixture) or AND (all equally likely)."""
from comfy_api.latest import io

from ..amdm_core import SUPERPOSE_MODES
from .settings import SuperposeSettings
from .socket_types import CATEGORY, Aggregation


class Superposition(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = SuperposeSettings()
        return io.Schema(
            node_id="AMDM_Superposition",
            display_name="Superposition (SuperDiff)",
            category=CATEGORY,
            description="SuperDiff (Skreta et al. 2024), in place of Spherical Aggregate: the base and its helpers "
                        "share ONE trajectory for the whole run; at every step their noise predictions (each with "
                        "its own CFG) are mixed with per-sample weights from each member's log-density, tracked "
                        "along the SDE taken. OR samples from any member's distribution, AND from where all are "
                        "equally likely. It runs its own reverse-SDE stepper: the sampler choice is not used (the "
                        "scheduler and steps give the sigmas; use many steps).",
            inputs=[
                io.Combo.Input("mode", options=list(SUPERPOSE_MODES), default=d.mode,
                               tooltip="or: a mixture, each sample follows the member whose density is highest "
                                       "(softmax of temperature x log-density + log weight). and: the weights keep "
                                       "every member's log-density (+ log weight) equal: images all members agree on."),
                io.Float.Input("temperature", default=d.temperature, min=0.0, max=100.0, step=0.01,
                               tooltip="OR only (AND needs 1): how sharply the mixture follows the most likely member; "
                                       "0 = fixed weights from the members' weights alone."),
            ],
            outputs=[Aggregation.Output(display_name="aggregation",
                                        tooltip="Connect to the 'aggregation' input of a Multi-Model Sampler or Guider. "
                                                "Member weights are prior weights (log w, w > 0).")],
        )

    @classmethod
    def execute(cls, mode, temperature) -> io.NodeOutput:
        return io.NodeOutput(SuperposeSettings(mode, float(temperature)))
