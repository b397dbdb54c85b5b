"""The VAE: ComfyUI's TAESD (comfy.taesd.taesd.TAESD, 8x downsampling, 4 latent channels) trained
as an autoencoder on the digit pictures, saved in the key layout the stock VAELoader reads
(taesd_encoder.*, taesd_decoder.*, vae_scale, vae_shift).

Training: random 32x32 crops (at multiples of 8 px) of 64x64 pictures, then full pictures; loss =
mean squared error with the ink pixels weighted 5x (the background is most of the picture), and
small Gaussian noise on the latent before decoding so that the decoder tolerates imperfect
diffusion samples. Afterwards vae_scale/vae_shift are set from the latent's mean m and std s over
full pictures: ComfyUI multiplies an SD1.5 latent by 0.18215 before the UNet sees it, so the UNet
works on (raw - m) / s, zero mean and unit std.
"""
from __future__ import annotations

import math
import time

import numpy as np

from . import data

SD15_SCALE = 0.18215


def build(seed: int):
    """A TAESD with seeded ReLU-gain normal init (comfy's own TAESD leaves weights uninitialised)."""
    import torch
    import comfy.taesd.taesd as taesd
    torch.manual_seed(seed)
    model = taesd.TAESD()
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=math.sqrt(2.0 / m.weight[0].numel()))
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    with torch.no_grad():
        for m in model.modules():      # residual blocks start near identity (no activation blow-up)
            if isinstance(m, taesd.Block):
                m.conv[-1].weight.mul_(0.1)
        model.taesd_encoder[-1].weight.mul_(0.3)
        model.taesd_decoder[-1].weight.mul_(0.1)   # start the decoder near a white picture
        model.taesd_decoder[-1].bias.fill_(1.0)
    return model


def sample_pictures(digits: data.Digits, rng: np.random.RandomState, n: int):
    idx = rng.randint(0, len(digits), n)
    pos = rng.randint(0, len(data.POSITIONS), n)
    col = rng.randint(0, len(data.COLOURS), n)
    return data.render_batch(digits.ink[idx], pos, col)


def loss_fn(model, x, noise_std, gen):
    import torch
    z = model.taesd_encoder(x)
    z = z + noise_std * torch.randn(z.shape, generator=gen)
    y = model.taesd_decoder(z)
    w = 1.0 + 4.0 * (1.0 - x).abs().amax(dim=1, keepdim=True)   # ink pixels weigh more
    return (w * (y - x) ** 2).mean() / w.mean(), z


def train(digits: data.Digits, seed: int, crop_steps: int, full_steps: int, log=print) -> dict:
    """Train; returns {"model", "losses", "seconds"}."""
    import torch
    model = build(seed)
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    total = crop_steps + full_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / total))))
    losses, t0, recent = [], time.time(), []
    for step in range(total):
        if step < crop_steps:
            pics = sample_pictures(digits, rng, 16)
            r, c = rng.randint(0, 5, 2) * 8
            pics = pics[:, :, r:r + 32, c:c + 32]
        else:
            pics = sample_pictures(digits, rng, 8)
        x = torch.from_numpy(np.ascontiguousarray(pics))
        loss, _ = loss_fn(model, x, 0.05, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        recent.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == total:
            losses.append({"step": step + 1, "loss": float(np.mean(recent))})
            log(f"vae step {step + 1}/{total} loss {np.mean(recent):.5f} ({time.time() - t0:.0f} s)")
            recent = []
    model.eval()
    return {"model": model, "losses": losses, "seconds": round(time.time() - t0, 1)}


def latent_stats(model, pictures) -> tuple[float, float]:
    import torch
    with torch.no_grad():
        z = model.taesd_encoder(torch.from_numpy(pictures))
    return float(z.mean()), float(z.std())


def finalize(model, mean: float, std: float) -> dict:
    """The fp16 state dict VAELoader reads, with vae_scale/vae_shift so that the UNet sees
    0.18215 * latent = (raw - mean) / std."""
    import torch
    sd = {k: v.detach() for k, v in model.state_dict().items() if k not in ("vae_scale", "vae_shift")}
    sd["vae_scale"] = torch.tensor(SD15_SCALE * std)
    sd["vae_shift"] = torch.tensor(-mean / (SD15_SCALE * std))
    return {k: v.to(torch.float16).contiguous() for k, v in sd.items()}


def load(sd):
    """A float32 TAESD from a finalize()d state dict (the fp16 weights, as ComfyUI would use them)."""
    import comfy.taesd.taesd as taesd
    model = taesd.TAESD()
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval()


def encode_unet_space(model, pictures, mean: float, std: float, batch: int = 64):
    """Pictures [N, 3, 64, 64] in [0, 1] -> what the UNet sees, (raw - mean) / std, [N, 4, 8, 8]."""
    import torch
    out = []
    with torch.no_grad():
        for i in range(0, len(pictures), batch):
            z = model.taesd_encoder(torch.from_numpy(np.ascontiguousarray(pictures[i:i + batch])))
            out.append((z - mean) / std)
    return torch.cat(out)


def decode_unet_space(model, x0, mean: float, std: float):
    import torch
    with torch.no_grad():
        return model.taesd_decoder(x0 * std + mean).clamp(0, 1)
