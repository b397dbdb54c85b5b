"""Small models of today's flow-matching families, for the model-family tests: a Flux-type
(guidance-distilled) DiT and two Wan-type video DiTs (the Wan 2.2 high-noise and low-noise experts),
generated from ComfyUI's own model classes so that the stock UNETLoader detects them as real Flux /
Wan 2.1-architecture BaseModels.

    models/unet/tiny_flux_dit.safetensors        Flux family (supported_models.Flux: model_base.Flux,
                                                 latent_formats.Flux, 16 channels, ModelSamplingFlux, a
                                                 guidance embedder read from FluxGuidance). One double
                                                 and one single block; context and pooled inputs are
                                                 768 wide, so the SD1.5-shaped test conditioning runs it.
                                                 Its width is the smallest that the running host's
                                                 detection accepts: hidden 128 (one 128-wide head) where
                                                 detection reads the head count from the width (0.33),
                                                 3072 where it fixes 24 heads (0.3.75).
    models/unet/tiny_wan_{high,low}.safetensors  Wan 2.1 architecture, as Wan 2.2 A14B's experts
                                                 (supported_models.WAN21_T2V: latent_formats.Wan21, 16
                                                 channels, 5-D [B, C, T, H, W] latents, shift 8). dim 128
                                                 (one head), one block, text width 4096 (fixed by the
                                                 class): see wan_conditioning().
    models/vae/tiny_taesd16_vae.safetensors      a TAESD of the 16-channel SD3/Flux latent space (VAELoader)
    models/vae/tiny_wan_vae.safetensors          a Wan 2.1 VAE (comfy reads its width from the weights:
                                                 8 here) for 5-D latents, 4x in time, 8x in space

Text encoders are not generated: Flux's T5-XXL, Wan's umT5-XXL (and every newer family's) have a fixed
width in ComfyUI's config, billions of weights; tests give those models seeded conditioning instead.

API: ``make_flow_models(models_dir) -> dict(kind -> Path)`` (idempotent, deterministic; an existing file is
kept). CLI: ``python -m devtools.flow_models MODELS_DIR``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import tiny_models
from .reliability_models import _rescale_output

FLUX_FILE = "tiny_flux_dit.safetensors"
WAN_FILES = {"wan_high": "tiny_wan_high.safetensors", "wan_low": "tiny_wan_low.safetensors"}
VAE_FILES = {"taesd16": "tiny_taesd16_vae.safetensors", "wan_vae": "tiny_wan_vae.safetensors"}
FILES = {"flux": FLUX_FILE, **WAN_FILES}

FLUX_SEED = 800
WAN_SEEDS = {"wan_high": 900, "wan_low": 901}
WAN_VAE_SEED = 902
PROBE_SEED = 1000

FLUX_AXES = [16, 56, 56]          # Flux's rope axes: one head is 128 wide
WAN_TEXT_DIM = 4096               # WanModel's text_dim (umT5-XXL width); detection does not read it


def flux_config(hidden: int) -> dict:
    return dict(in_channels=16, out_channels=16, vec_in_dim=768, context_in_dim=768, hidden_size=hidden,
                mlp_ratio=4.0, num_heads=hidden // sum(FLUX_AXES), depth=1, depth_single_blocks=0,
                axes_dim=FLUX_AXES, theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True)


def _host_flux_width() -> int:
    """128 where the host's detection derives the head count from the width, else Flux's own 3072
    (0.3.75 fixes num_heads = 24, so a head is 128 wide only at 3072)."""
    import torch
    import comfy.model_detection as md
    sd = {"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(128),
          "img_in.weight": torch.zeros(128, 64), "txt_in.weight": torch.zeros(128, 768)}
    cfg = md.detect_unet_config(sd, "")
    return 128 if cfg and cfg.get("num_heads") == 1 else 3072


def flux_state_dict():
    import torch
    import comfy.ldm.flux.model as flux
    tiny = tiny_models
    cfg = flux_config(_host_flux_width())
    params = set(flux.FluxParams.__dataclass_fields__)
    if "txt_ids_dims" in params:
        cfg["txt_ids_dims"] = []
    with tiny._seeded(FLUX_SEED):
        model = flux.Flux(operations=tiny._init_ops(), **cfg).eval()
        # older hosts build the q/k RMSNorm scales with torch.empty (loaded from a checkpoint): ones
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("norm.scale"):
                    p.fill_(1.0)
    g = torch.Generator().manual_seed(PROBE_SEED)
    x, ctx, y = (torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 77, 768, generator=g),
                 torch.randn(2, 768, generator=g))
    with torch.no_grad():
        out = model(x, torch.tensor([1.0, 0.2]), ctx, y=y, guidance=torch.tensor([3.5, 3.5]))
    _rescale_output(model.final_layer.linear.weight, model.final_layer.linear.bias, out.float().std().item())
    sd = model.state_dict()
    # the widest layers stay in fp8 where the host's own Flux is 3072 wide (as Flux files ship in fp8)
    return _fp8_wide(sd) if cfg["hidden_size"] > 1024 else tiny._fp16(sd)


def _fp8_wide(sd):
    import torch
    return {k: (v.to(torch.float8_e4m3fn) if v.ndim == 2 and v.numel() > 1_000_000 else v.half())
            for k, v in sd.items()}


def wan_state_dict(kind: str):
    import torch
    import comfy.ldm.wan.model as wan
    tiny = tiny_models
    with tiny._seeded(WAN_SEEDS[kind]):
        model = wan.WanModel(model_type="t2v", in_dim=16, dim=128, ffn_dim=256, text_dim=WAN_TEXT_DIM,
                             out_dim=16, num_heads=1, num_layers=1, operations=tiny._init_ops()).eval()
        # the modulation tables are torch.empty in comfy's class (loaded from a checkpoint): Wan's own
        # init, normal with std dim ** -0.5
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("modulation"):
                    p.normal_(0.0, 128 ** -0.5)
    g = torch.Generator().manual_seed(PROBE_SEED)
    x, ctx = torch.randn(2, 16, 3, 8, 8, generator=g), torch.randn(2, 16, WAN_TEXT_DIM, generator=g)
    with torch.no_grad():
        out = model(x, torch.tensor([1000.0, 200.0]), ctx)
    _rescale_output(model.head.head.weight, model.head.head.bias, out.float().std().item())
    return tiny._fp16(model.state_dict())


def wan_vae_state_dict():
    """comfy's WanVAE leaves its convs uninitialised (comfy.ops.disable_weight_init): seeded
    ReLU-gain normal init, RMS gammas 1, so that decoded frames are finite and not flat."""
    import torch
    import comfy.ldm.wan.vae as wan_vae
    with tiny_models._seeded(WAN_VAE_SEED):
        model = wan_vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                               temperal_downsample=[False, True, True], dropout=0.0).eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
                    torch.nn.init.normal_(m.weight, std=(2.0 / m.weight[0].numel()) ** 0.5)
                    if m.bias is not None:
                        m.bias.zero_()
            for name, p in model.named_parameters():
                if name.endswith("gamma"):
                    p.fill_(1.0)
    return tiny_models._fp16(model.state_dict())


def wan_conditioning(seed: int, tokens: int = 16):
    """A seeded stand-in for umT5-XXL output: [(1, tokens, 4096) tensor, {}], what CLIPTextEncode gives."""
    import torch
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, WAN_TEXT_DIM, generator=g), {}]]


def make_flow_models(models_dir) -> dict:
    """Write the Flux-type and Wan-type models under models_dir/unet and their VAEs under models_dir/vae
    (kept if present)."""
    tiny_models.ensure_comfy_importable()
    unet_dir = Path(models_dir).resolve() / "unet"
    unet_dir.mkdir(parents=True, exist_ok=True)
    builders = {"flux": flux_state_dict, "wan_high": lambda: wan_state_dict("wan_high"),
                "wan_low": lambda: wan_state_dict("wan_low")}
    builders.update(taesd16=lambda: tiny_models.taesd_state_dict(latent_channels=16), wan_vae=wan_vae_state_dict)
    vae_dir = unet_dir.parent / "vae"
    vae_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, build in builders.items():
        path = (vae_dir / VAE_FILES[kind]) if kind in VAE_FILES else (unet_dir / FILES[kind])
        if not path.is_file():
            tiny_models._save(build(), path)
        out[kind] = path
    return out


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dir", help="a ComfyUI models folder; files go to MODELS_DIR/unet/")
    paths = make_flow_models(parser.parse_args(argv).models_dir)
    json.dump({k: str(v) for k, v in paths.items()}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
