"""Helpers for the pack's host tests: call the pack's nodes the way ComfyUI's executor does."""
import torch


class AMDMRunner:
    def __init__(self, pack):
        self.pack = pack
        self.nodes = pack.nodes

    def chain(self, model, positive, negative, cfg=2.0, weight=0.0, previous=None, range_start=0.0, range_end=1.0,
              range_unit="percent"):
        return self.nodes.node_member.MultiModelMember.execute(model, positive, negative, cfg, weight, previous,
                                                                range_start, range_end, range_unit).args[0]

    def compose(self, **kw):
        return self.nodes.settings.ComposeSettings(**kw)

    def aggregation(self, **kw):
        return self.nodes.settings.AggregationSettings(**kw)

    def deviation(self, **kw):
        return self.nodes.settings.DeviationSettings(**kw)

    def sample(self, model, positive, negative, members, latent, *, seed=42, steps=4, cfg=2.0, sampler_name="euler",
               scheduler="normal", denoise=1.0, base_weight=1.0, aggregation=None, deviation=None,
               base_range=(0.0, 1.0, "percent")):
        """Multi-Model Sampler -> (LATENT dict, summary text, ui dict), under inference mode as
        ComfyUI's executor runs nodes."""
        with torch.inference_mode():
            out = self.nodes.node_sampler.MultiModelSampler.execute(
                model, positive, negative, members, latent, seed, steps, cfg, sampler_name, scheduler, denoise,
                base_weight, aggregation, deviation, *base_range)
        return out.args[0], out.args[1], out.ui

    def guider(self, model, positive, negative, members, cfg=2.0, base_weight=1.0, aggregation=None, deviation=None):
        return self.nodes.node_guider.MultiModelGuider.execute(model, positive, negative, members, cfg, base_weight,
                                                                aggregation, deviation).args[0]


def count_calls(model):
    """A clone of `model` whose UNet calls are recorded (sigma of each call), via the host's
    model_function_wrapper."""
    m = model.clone()
    calls = []

    def wrapper(apply_model, args):
        calls.append(float(args["timestep"].flatten()[0]))
        return apply_model(args["input"], args["timestep"], **args["c"])
    m.set_model_unet_function_wrapper(wrapper)
    return m, calls


def random_latent(shape=(1, 4, 8, 8), seed=5, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(shape, generator=g) * scale}
