"""Multi-Model Guider: the same aggregation as a GUIDER for SamplerCustomAdvanced."""
from comfy_api.latest import io

from .members import node_ref
from .run import build_guider
from .socket_types import CATEGORY, base_member_inputs, config_inputs


class MultiModelGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AMDM_MultiModelGuider",
            display_name="Multi-Model Guider",
            category=CATEGORY,
            description="AMDM as a GUIDER: connect to SamplerCustomAdvanced to use any NOISE, SAMPLER and SIGMAS "
                        "(custom schedules, split sigmas). Same members and configuration as the Multi-Model Sampler; "
                        "the window in steps counts the SIGMAS given to the sampler.",
            inputs=base_member_inputs() + [
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01, display_name="base cfg",
                               tooltip="The base model's classifier-free guidance scale."),
                io.Float.Input("base_weight", default=0.5, min=0.0, max=100.0, step=0.001, display_name="base weight",
                               tooltip="The base model's aggregation weight (scaled with the helpers' to sum of squares 1)."),
            ] + config_inputs(),
            outputs=[io.Guider.Output(display_name="GUIDER", tooltip="For SamplerCustomAdvanced.")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, positive, negative, members, cfg, base_weight, aggregation=None, deviation=None,
                base_range_start=0.0, base_range_end=1.0, base_range_unit="percent") -> io.NodeOutput:
        node = node_ref(cls.hidden, "Multi-Model Guider")
        return io.NodeOutput(build_guider(node, model, positive, negative, cfg, base_weight, members,
                                          aggregation, deviation, base_range_start, base_range_end, base_range_unit))
