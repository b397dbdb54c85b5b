"""Text conditioning: a seeded random CLIP-L (devtools.tiny_models.clip_l_state_dict) and the
embeddings of the prompt vocabulary, computed exactly as ComfyUI's CLIPTextEncode does.

The CLIP file is generated, never committed: `write_clip(path)` writes it (fp8 2-D weights, the
same bytes on every run with the same torch). `embed(prompts, clip_path)` loads it with ComfyUI's
own loader (comfy.sd.load_clip, CLIPType.STABLE_DIFFUSION: what the stock CLIPLoader calls), then
per prompt clip.tokenize(text) and clip.encode_from_tokens_scheduled(tokens) (CLIPTextEncode's two
calls) and returns the [77, 768] conditioning tensors.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

CLIP_FILE = "amdm_digits_clip_l.safetensors"


def clip_state_dict():
    from devtools import tiny_models
    tiny_models.ensure_comfy_importable()
    return tiny_models.clip_l_state_dict()


def state_sha256(sd) -> str:
    """A digest of the tensors (names, dtypes, shapes, bytes): the same CLIP gives the same digest."""
    import torch
    h = hashlib.sha256()
    for k in sorted(sd):
        t = sd[k].contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype.itemsize == 1 else t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_clip(path) -> str:
    """Write the generated CLIP-L text encoder (bare transformer keys, what CLIPLoader takes);
    returns its tensor digest."""
    from devtools import tiny_models
    sd = clip_state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tiny_models._save(sd, path)
    return state_sha256(sd)


def load_clip(clip_path):
    import comfy.sd
    return comfy.sd.load_clip(ckpt_paths=[str(clip_path)], embedding_directory=None,
                              clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)


def embed(prompts, clip_path):
    """{prompt: float32 tensor [77, 768]} through ComfyUI's tokenizer and encoder."""
    import torch
    clip = load_clip(clip_path)
    out = {}
    with torch.no_grad():
        for text in prompts:
            cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
            (c,) = [c for c, _ in cond]
            assert c.shape == (1, 77, 768), c.shape
            out[text] = c[0].float().cpu().clone()
    return out
