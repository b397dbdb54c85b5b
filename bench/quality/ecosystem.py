"""The toy models as real ComfyUI MODELs, and their CONDITIONING.

Each network is put into a real comfy.model_base.BaseModel built from a supported_models_base.BASE
subclass with unet_config {"disable_unet_model_creation": True} (no UNet is built; the toy net is
set as bm.diffusion_model), EPS model type, ComfyUI's ModelSamplingDiscrete (SD's schedule, from
the empty sampling_settings, exactly what SD1.5's config resolves to) and a one-channel
LatentFormat subclass (scale 1.0) shared by all members, and wrapped in a
comfy.model_patcher.ModelPatcher on the CPU. From there on everything is the host's: KSampler,
KSamplerAdvanced, ModelMergeSimple, the pack's nodes.

Every network counts its forward calls and the batch rows it processed (`calls`, `rows`), which
gives the compute each method spent independently of any summary.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .comfy_env import import_comfy
from .models import MODEL_ASPECT, TinyEpsNet, cond_vector

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class CountingNet(torch.nn.Module):
    """The toy net plus forward counters; its forward is what BaseModel._apply_model calls."""

    def __init__(self, net: TinyEpsNet):
        super().__init__()
        self.net = net
        self.calls = 0
        self.rows = 0

    @property
    def dtype(self):
        return self.net.dtype

    def forward(self, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kwargs):
        self.calls += 1
        self.rows += int(x.shape[0])
        return self.net(x, timesteps, context=context, control=control, transformer_options=transformer_options)

    def reset(self):
        self.calls = self.rows = 0


_CLASSES = {}


def _classes():
    """ToyLatent and ToyConfig, defined once ComfyUI is importable."""
    if not _CLASSES:
        import_comfy()
        import comfy.latent_formats
        import comfy.supported_models_base

        class ToyLatent(comfy.latent_formats.LatentFormat):
            """One channel, pixel space, scale 1.0 (no VAE: the latent is the canvas)."""
            latent_channels = 1
            scale_factor = 1.0

        class ToyConfig(comfy.supported_models_base.BASE):
            unet_config = {"disable_unet_model_creation": True}
            unet_extra_config = {}
            sampling_settings = {}         # ModelSamplingDiscrete defaults = SD's scaled_linear schedule
            latent_format = ToyLatent
            memory_usage_factor = 1.0
            supported_inference_dtypes = [torch.float32]

        _CLASSES.update(ToyLatent=ToyLatent, ToyConfig=ToyConfig)
    return _CLASSES["ToyLatent"], _CLASSES["ToyConfig"]


def load_net(path: Path) -> TinyEpsNet:
    from safetensors.torch import load_file
    sd = load_file(str(path))
    width = sd["c_in.weight"].shape[0]
    net = TinyEpsNet(width)
    net.load_state_dict(sd)
    return net.eval().requires_grad_(False)


def as_comfy_model(net: TinyEpsNet):
    """A real ModelPatcher around a real BaseModel whose diffusion_model is the toy net."""
    import_comfy()
    import comfy.model_base
    import comfy.model_patcher
    _, ToyConfig = _classes()
    config = ToyConfig(ToyConfig.unet_config)
    bm = comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.EPS, device=torch.device("cpu"))
    bm.diffusion_model = CountingNet(net)
    bm.eval()
    cpu = torch.device("cpu")
    return comfy.model_patcher.ModelPatcher(bm, load_device=cpu, offload_device=cpu)


def load_ecosystem(weights_dir: Path = WEIGHTS_DIR, names=("A", "B", "C")) -> dict:
    return {n: as_comfy_model(load_net(Path(weights_dir) / f"model_{n}.safetensors")) for n in names}


def counter(model) -> CountingNet:
    """The CountingNet inside a MODEL (also for merged clones: they share the module)."""
    return model.model.diffusion_model


def conditioning(target: dict, aspects) -> list:
    """CONDITIONING [[tensor(1, 1, 16), {}]] holding the target's values of the given aspects
    (one aspect for a member; several for a merged model). No aspect -> the all-zero negative."""
    v = torch.zeros_like(cond_vector(None, None))
    for a in aspects:
        v = v + cond_vector(a, target[a])
    return [[v.view(1, 1, -1), {}]]


def negative() -> list:
    return conditioning({}, ())


def member_conditioning(name: str, target: dict) -> list:
    """A member's positive CONDITIONING: its own aspect's target value ("B2" = a second load of B)."""
    aspect = MODEL_ASPECT[name.rstrip("0123456789")]
    return conditioning(target, (aspect,) if aspect in target else ())


def empty_latent(batch: int) -> dict:
    from .data import SIZE
    return {"samples": torch.zeros(batch, 1, SIZE, SIZE)}
