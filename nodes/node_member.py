"""Multi-Model Member: one helper model with its own conditioning, cfg and weight, chained."""
from comfy_api.latest import io

from .members import (MAX_MEMBERS, Member, MemberError, check_member_values, member_chain, member_label,
                      member_range, node_ref)
from .socket_types import CATEGORY, Members, range_inputs


class MultiModelMember(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="AMDM_Member",
            display_name="Multi-Model Member",
            category=CATEGORY,
            description="A helper model for the Multi-Model Sampler / Guider: its MODEL, its own positive and "
                        "negative conditioning, its own cfg and its aggregation weight. Chain several through "
                        "'previous' (up to 7 helpers); the base model is the sampler's own model input.",
            inputs=[
                io.Model.Input("model", tooltip="The helper model (same latent space as the base, e.g. another SD1.5 finetune)."),
                io.Conditioning.Input("positive", tooltip="This helper's own positive conditioning (encode it with this model's CLIP)."),
                io.Conditioning.Input("negative", tooltip="This helper's own negative conditioning."),
                io.Float.Input("cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Classifier-free guidance scale applied to this helper alone, before aggregation."),
                # step 0.001: the frontend shows and rounds a FLOAT to the decimals of its step, so the
                # paper's 0.866 stays 0.866 (with step 0.01 it is shown and re-typed as 0.87)
                io.Float.Input("weight", default=0.866, min=0.0, max=100.0, step=0.001,
                               tooltip="Aggregation weight. All member weights are scaled to sum of squares 1 "
                                       "(paper: base 0.5, helper 0.866). 0 switches the helper off: it is not loaded or run."),
                io.Custom("AMDM_MEMBERS").Input("previous", optional=True,
                                                tooltip="Earlier helpers in the chain (output of another Multi-Model Member)."),
            ] + range_inputs(),
            outputs=[Members.Output(display_name="helper members", tooltip="The chain of helper members so far.")],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, weight, previous=None, range_start=0.0, range_end=1.0,
                range_unit="percent") -> io.NodeOutput:
        node = node_ref(cls.hidden, "Multi-Model Member")
        try:
            chain = member_chain(previous, "previous")
        except MemberError as e:
            raise MemberError(f"Multi-Model Member (node #{node.id}): {e}") from None
        label = member_label(len(chain) + 1, node)
        if len(chain) + 2 > MAX_MEMBERS:
            raise MemberError(f"{label}: the chain has more than {MAX_MEMBERS} members (base + {MAX_MEMBERS - 1} "
                              f"helpers at most); remove a Multi-Model Member.")
        check_member_values(label, model, positive, negative, cfg, weight)
        rng = member_range(label, range_unit, range_start, range_end)
        return io.NodeOutput(chain + (Member(model, positive, negative, float(cfg), float(weight), label, rng),))
