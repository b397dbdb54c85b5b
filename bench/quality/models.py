"""Tiny eps-prediction denoiser for 1x16x16 canvases, with the forward signature ComfyUI's
BaseModel calls: diffusion_model(x, timesteps, context=None, control=None, transformer_options={},
**kwargs) -> eps.

x is the VP-scaled input (EPS.calculate_input: x / sqrt(sigma^2 + 1)), timesteps the discrete
index model_sampling.timestep(sigma) in 0..999, context the cross-attention tensor of the
CONDITIONING, shape [B, 1, COND_DIM]:

  dims 0..9    class one-hot     (model A)
  dims 10..13  position one-hot  (model B)
  dims 14..15  style one-hot     (model C)
  all zero     unconditional     (every model; the negative CONDITIONING)

Every model of the ecosystem is this architecture, fine-tuned from one shared unconditional base,
so ComfyUI's weight merge (ModelMergeSimple) is meaningful, as for SD1.5 finetunes. A model is
only ever trained with its own aspect's dims set (the rest zero), and the conditioning projection
starts at zero in the base, so a model's weights for the other aspects' dims stay exactly zero.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

COND_DIM = 16
COND_SLICES = {"class": (0, 10), "position": (10, 14), "style": (14, 16)}
MODEL_ASPECT = {"A": "class", "B": "position", "C": "style"}


def cond_vector(aspect: str | None, value: int | None) -> torch.Tensor:
    """The conditioning vector [COND_DIM] for one aspect value (None -> unconditional zeros)."""
    v = torch.zeros(COND_DIM)
    if aspect is not None:
        lo, hi = COND_SLICES[aspect]
        assert 0 <= value < hi - lo, (aspect, value)
        v[lo + value] = 1.0
    return v


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.cos(), a.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, c_in)
        self.c1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb, 2 * c_out)
        self.n2 = nn.GroupNorm(8, c_out)
        self.c2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, e):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(e)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        h = self.c2(F.silu(h))
        return self.skip(x) + h


class TinyEpsNet(nn.Module):
    """Pixel-unshuffle to 4x8x8, a two-level U-Net (8x8 and 4x4), pixel-shuffle back.
    About 0.3 M parameters at width 32."""

    def __init__(self, width: int = 32, emb: int = 128, cond_dim: int = COND_DIM):
        super().__init__()
        self.config = {"width": width, "emb": emb, "cond_dim": cond_dim}
        w = width
        self.t_dim = 64
        self.t_mlp = nn.Sequential(nn.Linear(self.t_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond_proj = nn.Linear(cond_dim, emb, bias=False)
        nn.init.zeros_(self.cond_proj.weight)
        self.c_in = nn.Conv2d(4, w, 3, padding=1)
        self.rb1 = ResBlock(w, w, emb)
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.rb2 = ResBlock(2 * w, 2 * w, emb)
        self.rb3 = ResBlock(2 * w, 2 * w, emb)
        self.up = nn.Conv2d(2 * w, w, 3, padding=1)
        self.rb4 = ResBlock(2 * w, w, emb)
        self.n_out = nn.GroupNorm(8, w)
        self.c_out = nn.Conv2d(w, 4, 3, padding=1)
        nn.init.zeros_(self.c_out.weight)
        nn.init.zeros_(self.c_out.bias)

    @property
    def dtype(self):
        return self.c_in.weight.dtype

    def forward(self, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kwargs):
        b = x.shape[0]
        e = self.t_mlp(timestep_embedding(timesteps.reshape(-1).expand(b) if timesteps.numel() == 1
                                          else timesteps.reshape(-1), self.t_dim).to(x.dtype))
        if context is not None:
            e = e + self.cond_proj(context.reshape(b, -1, context.shape[-1])[:, 0].to(x.dtype))
        e = F.silu(e)
        h0 = self.c_in(F.pixel_unshuffle(x, 2))
        h1 = self.rb1(h0, e)
        h = self.down(h1)
        h = self.rb3(self.rb2(h, e), e)
        h = self.up(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.rb4(torch.cat([h, h1], dim=1), e)
        return F.pixel_shuffle(self.c_out(F.silu(self.n_out(h))), 2)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
