"""Demo models for the main command and the workflow tests: generated here, never downloaded.

Written under BASE/models (a ComfyUI model-folder layout):

    checkpoints/amdm_demo_content.safetensors   tiny SD1.5 UNet "a" + TAESD VAE + random CLIP-L
    checkpoints/amdm_demo_style.safetensors     tiny SD1.5 UNet "b" + TAESD VAE + the same CLIP-L
    gligen/amdm_demo_gligen.safetensors         tiny GLIGEN (box/text position net + one gated
                                                self-attention fuser for the tiny UNet's only
                                                transformer block), loads with stock GLIGENLoader

The UNets, VAE and CLIP come from devtools/tiny_models.py (ComfyUI's own classes with
seeded random weights): every stock loader accepts them, images are noise-like. Deterministic;
a second call with the files present does nothing.

CLI: python -m devtools.demo_models BASE   (ComfyUI from COMFYUI_PATH or the newest host in .cache/hosts/)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from . import tiny_models


CONTENT_CKPT = "amdm_demo_content.safetensors"
STYLE_CKPT = "amdm_demo_style.safetensors"
GLIGEN_FILE = "amdm_demo_gligen.safetensors"
GLIGEN_SEED = 500
VERSION = 1  # bump when the files change

# The tiny UNet's transformer block (comfy key prefix) and its width; CLIP-L width is 768.
GLIGEN_BLOCK = "input_blocks.1.1"
GLIGEN_QUERY_DIM = 320
GLIGEN_KEY_DIM = 768


def paths(base_dir) -> dict:
    models = Path(base_dir).resolve() / "models"
    return {"content": models / "checkpoints" / CONTENT_CKPT,
            "style": models / "checkpoints" / STYLE_CKPT,
            "gligen": models / "gligen" / GLIGEN_FILE}


def gligen_state_dict():
    """A GLIGEN checkpoint in the key layout comfy.gligen.load_gligen reads: a position net
    (768-d text embedding + Fourier box -> 768-d grounding tokens) and one fuser for the tiny
    UNet's transformer block. Seeded normal init; alpha_attn = alpha_dense = 1 so the gated
    branch is active (a real GLIGEN learns them; 0 would make it an identity)."""
    import torch
    import comfy.gligen as gligen

    sd = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(GLIGEN_SEED)
        fuser = gligen.GatedSelfAttentionDense(GLIGEN_QUERY_DIM, GLIGEN_KEY_DIM, 8, GLIGEN_QUERY_DIM // 8)
        pos = gligen.PositionNet(GLIGEN_KEY_DIM, GLIGEN_KEY_DIM)
        gen = torch.Generator().manual_seed(GLIGEN_SEED)
        for prefix, module in ((GLIGEN_BLOCK + ".fuser.", fuser), ("position_net.", pos)):
            for k, v in module.state_dict().items():
                if k.startswith("alpha_"):
                    t = torch.tensor(1.0)
                elif "null_" in k:
                    t = torch.zeros_like(v)
                elif v.ndim >= 2:
                    t = torch.randn(v.shape, generator=gen) / math.sqrt(v[0].numel())
                elif "norm" in k and k.endswith("weight"):
                    t = torch.ones_like(v)
                else:
                    t = torch.zeros_like(v)
                sd[prefix + k] = t.to(torch.float16).contiguous()
    return sd


def make_demo_models(base_dir, gligen: bool = True, checkpoints: bool = True) -> dict:
    """Write the demo models under base_dir/models (each skipped when present and current);
    returns their paths. Files are written atomically (temp file + rename)."""
    out = paths(base_dir)
    stamp = Path(base_dir).resolve() / "models" / f".amdm-demo-models-v{VERSION}"
    wanted = ([out["content"], out["style"]] if checkpoints else []) + ([out["gligen"]] if gligen else [])
    current = stamp.is_file()
    todo = [p for p in wanted if not (current and p.is_file())]
    if not todo:
        return out
    gen = tiny_models
    gen.ensure_comfy_importable()
    for p in wanted:
        p.parent.mkdir(parents=True, exist_ok=True)
    if out["content"] in todo or out["style"] in todo:
        vae = gen.taesd_state_dict()
        clip = {"cond_stage_model.transformer." + k: t for k, t in gen.clip_l_state_dict().items()}
        for key, variant in (("content", "a"), ("style", "b")):
            if out[key] not in todo:
                continue
            ckpt = {"model.diffusion_model." + k: t for k, t in gen.unet_state_dict(gen.variant_seed(variant)).items()}
            ckpt.update({"first_stage_model." + k: t for k, t in vae.items()})
            ckpt.update(clip)
            gen._save(ckpt, out[key])
    if out["gligen"] in todo:
        gen._save(gligen_state_dict(), out["gligen"])
    if not current:   # files of an older version are rewritten above only if requested: drop them
        for p in (out["content"], out["style"], out["gligen"]):
            if p not in wanted and p.exists():
                p.unlink()
    stamp.write_text(json.dumps({k: str(v) for k, v in out.items()}) + "\n")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: demo_models.py BASE_DIR\n")
        return 2
    out = make_demo_models(argv[0])
    sys.stdout.write(json.dumps({k: str(v) for k, v in out.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
