"""Small models of the OTHER families, for the reliability tests: an SDXL-type UNet and an SD3-type
(flow-matching, 16-channel latent) MMDiT, generated from ComfyUI's own model classes so that the
stock UNETLoader detects them as real SDXL / SD3 BaseModels.

    models/unet/tiny_sdxl_unet.safetensors   SDXL family (comfy detects "KOALA_700M", an SDXL subclass):
                                             model_base.SDXL, latent_formats.SDXL (4 channels, scale
                                             0.13025), eps prediction, ModelSamplingDiscrete. 60.6 M
                                             parameters (fp16 file ~121 MB): the smallest UNet that
                                             comfy.model_detection still reads as an SDXL-type model
                                             (model_channels 320, context 2048, adm 2816 and one of the
                                             SDXL-family transformer_depth lists are fixed by detection;
                                             channel_mult [1, 1, 1] and one res block per level are not).
    models/unet/tiny_sd3_dit.safetensors     SD3 family: model_base.SD3, latent_formats.SD3 (16 channels),
                                             flow matching (ModelSamplingDiscreteFlow, shift 3). MMDiT of
                                             depth 1 (hidden 64), 0.24 M parameters; its context and pooled
                                             inputs are 768 wide, so the SD1.5-shaped test conditioning
                                             (AMDMTest_Conditioning / make_cond) runs it.

The SD1.5-type models come from tiny_models.py. Conditioning for the SDXL-type model is
(1, 77, 2048) with a (1, 1280) pooled output: see sdxl_conditioning().

API: ``make_reliability_models(models_dir) -> dict(kind -> Path)`` (idempotent, deterministic: the same
call gives byte-identical files; an existing file is kept). CLI: ``python -m devtools.reliability_models
MODELS_DIR`` (ComfyUI from COMFYUI_PATH or the newest host in .cache/hosts/).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from . import tiny_models


SDXL_UNET_FILE = "tiny_sdxl_unet.safetensors"
SD3_DIT_FILE = "tiny_sd3_dit.safetensors"
FILES = {"sdxl": SDXL_UNET_FILE, "sd3": SD3_DIT_FILE}

SDXL_SEED = 500
SD3_SEED = 600
PROBE_SEED = 700

# comfy.supported_models.KOALA_700M(SDXL): model_channels 320, use_linear_in_transformer, transformer_depth
# [0, 2, 5], context_dim 2048, adm_in_channels 2816. Everything else (levels' widths, res blocks, output
# transformers, middle block) is free, so they are as small as the UNet class allows.
SDXL_UNET_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320,
    num_res_blocks=[1, 1, 1], channel_mult=[1, 1, 1], transformer_depth=[0, 2, 5],
    transformer_depth_output=[0] * 6, transformer_depth_middle=-2,
    context_dim=2048, num_heads=-1, num_head_channels=64, use_linear_in_transformer=True,
    use_spatial_transformer=True, legacy=False, adm_in_channels=2816, num_classes="sequential",
    use_checkpoint=False,
)
SDXL_CONTEXT, SDXL_POOLED = 2048, 1280

# comfy.supported_models.SD3: in_channels 16 and no pos_embed_scaling_factor; depth d gives hidden 64*d.
SD3_MMDIT_CONFIG = dict(
    input_size=None, patch_size=2, in_channels=16, out_channels=16, depth=1, adm_in_channels=768,
    context_embedder_config={"target": "torch.nn.Linear", "params": {"in_features": 768, "out_features": 64}},
    pos_embed_max_size=8, num_patches=64,       # up to 16x16 latents (128x128 pixels)
)


def _tiny():
    """tiny_models.py (ComfyUI path set-up, seeded init ops, fp16 save)."""
    return tiny_models


def _rescale_output(layer_weight, layer_bias, std: float):
    """Power-of-two output scale so predictions have std of order 1 (as tiny_models does)."""
    import torch
    if not math.isfinite(std) or std == 0.0:
        raise RuntimeError(f"generated model gives a degenerate output (std={std})")
    scale = 2.0 ** round(math.log2(1.0 / std))
    with torch.no_grad():
        layer_weight.mul_(scale)
        if layer_bias is not None:
            layer_bias.mul_(scale)


def sdxl_state_dict():
    import torch
    import comfy.ldm.modules.diffusionmodules.openaimodel as oam
    tiny = _tiny()
    with tiny._seeded(SDXL_SEED):
        unet = oam.UNetModel(**SDXL_UNET_CONFIG, operations=tiny._init_ops()).eval()
    g = torch.Generator().manual_seed(PROBE_SEED)
    x, ctx, y = (torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, SDXL_CONTEXT, generator=g),
                 torch.randn(2, 2816, generator=g))
    with torch.no_grad():
        std = unet(x, timesteps=torch.tensor([999.0, 200.0]), context=ctx, y=y).float().std().item()
    _rescale_output(unet.out[2].weight, unet.out[2].bias, std)
    return tiny._fp16(unet.state_dict())


def sd3_state_dict(seed: int = SD3_SEED):
    import torch
    import comfy.ldm.modules.diffusionmodules.mmdit as mmdit
    tiny = _tiny()
    with tiny._seeded(seed):
        dit = mmdit.MMDiT(**SD3_MMDIT_CONFIG, operations=tiny._init_ops()).eval()
        # pos_embed is allocated with torch.empty (the real one is loaded from the checkpoint): fill it.
        # The rest keeps torch's default init (not the reference adaLN-zero init), so the output depends
        # on x, t and the conditioning, which is what the tests need.
        with torch.no_grad():
            dit.pos_embed.normal_(0.0, 0.02)
    g = torch.Generator().manual_seed(PROBE_SEED)
    x, ctx, y = (torch.randn(2, 16, 8, 8, generator=g), torch.randn(2, 77, 768, generator=g),
                 torch.randn(2, 768, generator=g))
    with torch.no_grad():
        std = dit(x, torch.tensor([999.0, 200.0]), y=y, context=ctx).float().std().item()
    _rescale_output(dit.final_layer.linear.weight, dit.final_layer.linear.bias, std)
    return tiny._fp16(dit.state_dict())


def make_reliability_models(models_dir) -> dict:
    """Write the SDXL-type and SD3-type models under models_dir/unet (kept if present)."""
    tiny = _tiny()
    tiny.ensure_comfy_importable()
    unet_dir = Path(models_dir).resolve() / "unet"
    unet_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, build in (("sdxl", sdxl_state_dict), ("sd3", sd3_state_dict)):
        path = unet_dir / FILES[kind]
        if not path.is_file():
            tiny._save(build(), path)
        out[kind] = path
    return out


def sdxl_conditioning(seed: int = 0, scale: float = 1.0, width: int = 64, height: int = 64):
    """SDXL-shaped CONDITIONING: (1, 77, 2048) tokens, (1, 1280) pooled output and the size keys
    SDXL's encode_adm reads (as CLIPTextEncodeSDXL would give)."""
    import torch
    g = torch.Generator().manual_seed(int(seed))
    cond = torch.randn(1, 77, SDXL_CONTEXT, generator=g) * scale
    pooled = torch.randn(1, SDXL_POOLED, generator=g) * scale
    return [[cond, {"pooled_output": pooled, "width": width, "height": height, "crop_w": 0, "crop_h": 0,
                    "target_width": width, "target_height": height}]]


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dir", help="a ComfyUI models folder; files go to MODELS_DIR/unet/")
    ns = parser.parse_args(argv)
    paths = make_reliability_models(ns.models_dir)
    json.dump({k: str(v) for k, v in paths.items()}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
