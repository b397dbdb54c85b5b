"""Generate tiny, random SD1.5-format models that ComfyUI's stock loaders accept.

The weights come from ComfyUI's own model classes (UNetModel, TAESD, CLIPTextModel) built with
plain torch layers, so key names are right by construction. Everything is seeded and written to
a ComfyUI ``--base-directory`` layout under BASE:

    models/unet/tiny_sd15_unet_{a,b,c}.safetensors   bare UNet keys           -> UNETLoader
    models/checkpoints/tiny_sd15_{a,b}.safetensors   UNet + TAESD, no CLIP     -> CheckpointLoaderSimple
    models/vae/tiny_taesd_vae.safetensors            TAESD                     -> VAELoader
    models/loras/tiny_lora_a.safetensors             kohya LoRA for UNet a     -> LoraLoaderModelOnly
    models/checkpoints/tiny_sd15_clip.safetensors    UNet a + TAESD + random CLIP-L (fp8), clip=True

API: ``make_models(base_dir, variants=("a", "b", "c"), clip=False) -> TinyModels``.
CLI: ``python -m devtools.tiny_models BASE [--variants a,b,c] [--clip]`` (ComfyUI from COMFYUI_PATH or
the newest host in .cache/hosts/); writes a JSON summary to stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .host import put_comfyui_first

log = logging.getLogger(__name__)


UNET_FILE = "tiny_sd15_unet_{}.safetensors"
CHECKPOINT_FILE = "tiny_sd15_{}.safetensors"
CHECKPOINT_VARIANTS = ("a", "b")  # variants that also get a full (UNet + VAE) checkpoint
VAE_FILE = "tiny_taesd_vae.safetensors"
LORA_FILE = "tiny_lora_{}.safetensors"
LORA_VARIANTS = ("a",)
CLIP_CHECKPOINT_FILE = "tiny_sd15_clip.safetensors"

# Smallest UNet that comfy.model_detection still reads back as SD15: SD15 needs context_dim=768,
# model_channels=320, use_linear_in_transformer=False, adm_in_channels=None, in_channels=4 and at
# least one transformer block (context_dim is read from attn2.to_k). Depth and levels are free.
UNET_CONFIG = dict(
    image_size=32, in_channels=4, out_channels=4, model_channels=320,
    num_res_blocks=[1], channel_mult=[1], transformer_depth=[1], transformer_depth_output=[0, 0],
    transformer_depth_middle=-2,  # no middle block at all
    context_dim=768, num_heads=8, num_head_channels=-1, use_linear_in_transformer=False,
    use_spatial_transformer=True, legacy=False, adm_in_channels=None, use_checkpoint=False,
)

VARIANT_SEEDS = {"a": 0, "b": 1, "c": 2}
TAESD_SEED = 100
LORA_SEED = 200
CLIP_SEED = 300
PROBE_SEED = 400

# kohya names (diffusers module path, dots -> underscores) of the tiny UNet's input transformer:
# down_blocks.0.attentions.0 is comfy's input_blocks.1.1.
LORA_TARGETS = (
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_v",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v",
)
LORA_RANK = 4


# What the stock KSampler gives on UNet "a" for the harness's default run: seed 42, 4 steps,
# cfg 2.0, euler/normal, 64x64 empty latent, positive = seeded conditioning 0 (AMDMTest_Conditioning
# / make_cond(0)), negative = all zeros. Measured with torch 2.14.1 on CPU, ComfyUI 0.3.75, one
# thread (two threads give mean -3.2809863, same std to 1e-6); both the in-process and the server
# smoke tests check it (a changed generator must update it).
REFERENCE_RUN = {"torch": "2.14.", "mean": -3.2809918, "std": 126.710045}


@dataclass(frozen=True)
class TinyModels:
    """Absolute paths of the generated files; ``path.name`` is what the stock loaders take."""
    base_dir: Path
    unet: dict[str, Path] = field(default_factory=dict)        # variant -> models/unet/...
    checkpoint: dict[str, Path] = field(default_factory=dict)  # variant -> models/checkpoints/...
    lora: dict[str, Path] = field(default_factory=dict)        # variant -> models/loras/...
    vae: Path | None = None
    clip_checkpoint: Path | None = None

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    def as_json(self) -> dict:
        def s(v):
            if isinstance(v, dict):
                return {k: str(p) for k, p in v.items()}
            return None if v is None else str(v)
        return {k: s(getattr(self, k)) for k in ("base_dir", "unet", "checkpoint", "lora", "vae", "clip_checkpoint")}


def ensure_comfy_importable() -> None:
    """ComfyUI importable, with the project's one CPU rule (devtools.host)."""
    if "comfy" not in sys.modules:
        put_comfyui_first()


def variant_seed(variant: str) -> int:
    return VARIANT_SEEDS.get(variant, zlib.crc32(variant.encode()) & 0x7FFFFFFF)


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's CPU RNG without disturbing the caller's RNG state."""
    import torch
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _init_ops():
    """Plain torch layers (with torch's default init) under the names comfy's models use."""
    import torch

    class InitOps:
        Linear = torch.nn.Linear
        Conv2d = torch.nn.Conv2d
        Conv3d = torch.nn.Conv3d
        GroupNorm = torch.nn.GroupNorm
        LayerNorm = torch.nn.LayerNorm
        Embedding = torch.nn.Embedding
        RMSNorm = torch.nn.RMSNorm

        @staticmethod
        def conv_nd(dims, *args, **kwargs):
            return {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[dims](*args, **kwargs)

    return InitOps


def _fp16(sd):
    import torch
    return {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}


def build_unet(seed: int):
    """A float32 comfy UNetModel with seeded default init and its output conv rescaled so eps
    predictions have std of order 1 (measured: raw std ~0.33 for seeds 0-2, so the scale is 4)."""
    import torch
    import comfy.ldm.modules.diffusionmodules.openaimodel as oam

    with _seeded(seed):
        unet = oam.UNetModel(**UNET_CONFIG, operations=_init_ops()).eval()
    gen = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    ctx = torch.randn(2, 77, 768, generator=gen)
    with torch.no_grad():
        std = unet(x, timesteps=torch.tensor([999.0, 200.0]), context=ctx).float().std().item()
    if not math.isfinite(std) or std == 0.0:
        raise RuntimeError(f"tiny UNet (seed {seed}) gives a degenerate output (std={std})")
    # A power of two keeps the scale exact in fp16 and insensitive to last-bit kernel differences.
    scale = 2.0 ** round(math.log2(1.0 / std))
    with torch.no_grad():
        unet.out[2].weight.mul_(scale)
        unet.out[2].bias.mul_(scale)
    return unet


def unet_state_dict(seed: int):
    return _fp16(build_unet(seed).state_dict())


def taesd_state_dict(latent_channels: int = 4):
    """comfy's TAESD uses comfy.ops.disable_weight_init (weights left uninitialised): re-init every
    conv with a seeded ReLU-gain normal init, then scale the decoder's last conv so decoded images
    sit mostly inside [0, 1] instead of saturating. latent_channels 16 gives the TAESD of the
    SD3/Flux latent space (flow_models.py)."""
    import torch
    import comfy.taesd.taesd as taesd

    with _seeded(TAESD_SEED):
        model = taesd.TAESD(latent_channels=latent_channels).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.normal_(m.weight, std=math.sqrt(2.0 / m.weight[0].numel()))
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
    # The raw decoder output is the pixel value (comfy maps decode()'s [-1, 1] back with (x+1)/2):
    # aim for mean 0.5, std ~0.25 per channel. Power-of-two scale and rounded bias keep the fp16
    # weights identical even if the probe's float result differs in its last bits.
    last = model.taesd_decoder[-1]
    probe = 3.0 * torch.randn(1, latent_channels, 8, 8, generator=torch.Generator().manual_seed(PROBE_SEED))
    with torch.no_grad():
        raw = model.taesd_decoder(probe)
        scale = 2.0 ** round(math.log2(0.25 / raw.std().item()))
        last.weight.mul_(scale)
        last.bias.copy_(torch.round((0.5 - scale * raw.mean(dim=(0, 2, 3))) * 100) / 100)
    sd = model.state_dict()
    sd["vae_scale"] = torch.tensor(1.0)
    sd["vae_shift"] = torch.tensor(0.0)
    return _fp16(sd)


def clip_l_config() -> dict:
    """comfy's SD1 CLIP-L config (sd1_clip_config.json beside comfy.clip_model)."""
    import comfy.clip_model
    return json.loads((Path(comfy.clip_model.__file__).parent / "sd1_clip_config.json").read_text())


def clip_l_storage(sd) -> dict:
    """A CLIP-L state dict as stored: fp16, 2-D weights but the position embedding in fp8 (the
    checkpoint is ~150 MiB instead of ~280 MB in fp16; comfy upcasts on load)."""
    import torch
    return {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 and "position" not in k else v for k, v in _fp16(sd).items()}


def clip_l_state_dict():
    """Random CLIP-L text encoder with comfy's SD1 config, stored as clip_l_storage does."""
    import torch
    import comfy.clip_model

    with _seeded(CLIP_SEED):
        model = comfy.clip_model.CLIPTextModel(clip_l_config(), dtype=torch.float32, device="cpu",
                                               operations=_init_ops())
    sd = model.state_dict()
    sd.pop("text_projection.weight", None)
    return clip_l_storage(sd)


def lora_state_dict(unet_sd, seed: int = LORA_SEED):
    """A kohya-format LoRA (lora_down/lora_up/alpha, diffusers module names as real SD1.5 LoRAs use)
    on the two value projections of UNet a's transformer. ||delta W|| / ||W|| is about 0.11 (self-attn)
    and 0.07 (cross-attn): a clearly measurable, still moderate change of the sampled latents."""
    import torch

    # kohya target -> comfy UNet key, to read the weight's shape and scale
    comfy_keys = {
        LORA_TARGETS[0]: "input_blocks.1.1.transformer_blocks.0.attn1.to_v.weight",
        LORA_TARGETS[1]: "input_blocks.1.1.transformer_blocks.0.attn2.to_v.weight",
    }
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in LORA_TARGETS:
        w = unet_sd[comfy_keys[name]].float()
        out_dim, in_dim = w.shape
        down = torch.randn(LORA_RANK, in_dim, generator=gen) / math.sqrt(in_dim)
        up = torch.randn(out_dim, LORA_RANK, generator=gen) / math.sqrt(LORA_RANK)
        up *= 2.0 * w.std().item()  # ties the change's size to the weight's own scale
        out[f"{name}.lora_down.weight"] = down.to(torch.float16)
        out[f"{name}.lora_up.weight"] = up.to(torch.float16)
        out[f"{name}.alpha"] = torch.tensor(float(LORA_RANK), dtype=torch.float16)
    return out


def _save(tensors, path: Path) -> None:
    """Write via a temp file + rename: a process that has the old file memory-mapped (a running
    server, an earlier load) keeps a valid inode instead of seeing it truncated."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)


def make_models(base_dir, variants=("a", "b", "c"), clip=False) -> TinyModels:
    """Write the tiny models under ``base_dir/models`` and return their paths. Deterministic:
    the same arguments give byte-identical files."""
    ensure_comfy_importable()

    base = Path(base_dir).resolve()
    dirs = {d: base / "models" / d for d in ("unet", "checkpoints", "vae", "loras")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)

    vae_sd = taesd_state_dict()
    vae_path = dirs["vae"] / VAE_FILE
    _save(vae_sd, vae_path)

    def checkpoint(unet_sd):
        ckpt = {"model.diffusion_model." + k: t for k, t in unet_sd.items()}
        ckpt.update({"first_stage_model." + k: t for k, t in vae_sd.items()})
        return ckpt

    unets, ckpts, loras = {}, {}, {}
    for v in variants:
        u = unet_state_dict(variant_seed(v))
        unets[v] = dirs["unet"] / UNET_FILE.format(v)
        _save(u, unets[v])
        if v in CHECKPOINT_VARIANTS:
            ckpts[v] = dirs["checkpoints"] / CHECKPOINT_FILE.format(v)
            _save(checkpoint(u), ckpts[v])
        if v in LORA_VARIANTS:
            loras[v] = dirs["loras"] / LORA_FILE.format(v)
            _save(lora_state_dict(u), loras[v])

    clip_path = None
    if clip:  # UNet "a" + TAESD + random CLIP-L, so CheckpointLoaderSimple -> CLIPTextEncode works
        ckpt = checkpoint(unet_state_dict(variant_seed("a")))
        ckpt.update({"cond_stage_model.transformer." + k: t for k, t in clip_l_state_dict().items()})
        clip_path = dirs["checkpoints"] / CLIP_CHECKPOINT_FILE
        _save(ckpt, clip_path)
    log.info("tiny models (variants %s%s) written under %s", ",".join(variants), ", clip" if clip else "", base / "models")
    return TinyModels(base_dir=base, unet=unets, checkpoint=ckpts, lora=loras, vae=vae_path,
                      clip_checkpoint=clip_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_dir", help="ComfyUI base directory; files go to BASE/models/...")
    parser.add_argument("--variants", default="a,b,c", help="comma-separated UNet variants (default a,b,c)")
    parser.add_argument("--clip", action="store_true", help="also write tiny_sd15_clip.safetensors (random CLIP-L, fp8)")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    variants = tuple(v for v in ns.variants.split(",") if v)
    models = make_models(ns.base_dir, variants=variants, clip=ns.clip)
    json.dump(models.as_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
