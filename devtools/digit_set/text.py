"""Text conditioning: a generated CLIP-L made for reading (see clip_state_dict) and the embeddings
of the prompt vocabulary, computed exactly as ComfyUI's CLIPTextEncode does.

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
CLIP_SEED = 301


def clip_state_dict():
    """A CLIP-L in the stock format whose every token after the prompt carries the whole prompt.

    Why not a plain random CLIP-L: there a prompt's words change their own token slots, but the ~70
    padding tokens barely (spread over the vocabulary 2.6 % of a token's norm at slot 76), so a UNet
    whose cross-attention starts near uniform sees almost the same context for every prompt; the
    set trained on it read its prompts at chance level. Built here instead (seeded, not trained):
    random word embeddings N(0, 1), the end/pad token's embedding zero, no position embedding, and
    layer 0's attention with zero queries and keys (uniform over the causal window) and identity
    value and output maps, so token p gets the mean of the normalised words up to p. The other
    layers and every MLP are zero (residual pass-through). After the final layer norm each padding
    token is the normalised bag of the prompt's words, the same at every slot: a readable context
    whichever way the attention looks. Stock CLIPLoader / CheckpointLoaderSimple load it as SD1.5's
    CLIP-L (same keys and shapes); CLIPSetLastLayer -1 .. -11 give the same output.
    """
    import torch
    from devtools import tiny_models
    tiny_models.ensure_comfy_importable()
    import comfy.clip_model
    cfg = tiny_models.clip_l_config()
    shapes = {k: v.shape for k, v in comfy.clip_model.CLIPTextModel(
        cfg, dtype=torch.float32, device="meta", operations=tiny_models._init_ops()).state_dict().items()}
    shapes.pop("text_projection.weight", None)
    sd = {k: torch.zeros(s) for k, s in shapes.items()}
    for k in sd:
        if k.endswith("layer_norm1.weight") or k.endswith("layer_norm2.weight") or k == "text_model.final_layer_norm.weight":
            sd[k].fill_(1.0)
    emb = torch.randn(shapes["text_model.embeddings.token_embedding.weight"],
                      generator=torch.Generator().manual_seed(CLIP_SEED))
    emb[cfg["eos_token_id"]] = 0.0    # end and pad: add nothing to the mean
    sd["text_model.embeddings.token_embedding.weight"] = emb
    eye = torch.eye(cfg["hidden_size"])
    for name in ("v_proj", "out_proj"):
        sd[f"text_model.encoder.layers.0.self_attn.{name}.weight"] = eye.clone()
    return tiny_models.clip_l_storage(sd)


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
