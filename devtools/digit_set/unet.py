"""The SD1.5-format UNet (ComfyUI's own UNetModel, devtools.tiny_models.UNET_CONFIG: one 8x8
level with 320 channels and one cross-attention block; comfy.model_detection reads it back as
SD15), its eps training on ComfyUI's SD1.5 discrete schedule, and the finetunes as LoRAs.

Schedule: ComfyUI's ModelSamplingDiscrete defaults (what SD1.5 uses): betas = linspace(sqrt(0.00085),
sqrt(0.012), 1000)^2, alphas_cumprod = cumprod(1 - betas); x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps,
the network gets (x_t, t, context [B, 77, 768]) and predicts eps: exactly ComfyUI's EPS model input
x / sqrt(sigma^2 + 1) with sigma = sqrt((1 - a_t) / a_t).

LoRAs: every Conv2d and Linear of the UNet gets W + up @ down (rank RANK, alpha = RANK), saved under
kohya-style names built from ComfyUI's own UNet keys (lora_unet_<key with dots as underscores>,
lora_down/lora_up/alpha), which the stock LoraLoaderModelOnly maps onto the UNet.
"""
from __future__ import annotations

import math
import time

import numpy as np

RANK = 32
T = 1000


def alphas_cumprod():
    import comfy.model_sampling
    import torch
    ms = comfy.model_sampling.ModelSamplingDiscrete()   # SD1.5's settings: linear 0.00085 .. 0.012
    # sigmas = sqrt((1 - a) / a)  ->  a = 1 / (1 + sigma^2)
    return (1.0 / (1.0 + ms.sigmas.double() ** 2)).float().to(torch.float32)


def build(seed: int):
    import torch
    import comfy.ldm.modules.diffusionmodules.openaimodel as oam
    from devtools import tiny_models
    torch.manual_seed(seed)
    unet = oam.UNetModel(**tiny_models.UNET_CONFIG, operations=tiny_models._init_ops())
    with torch.no_grad():
        unet.out[2].weight.mul_(0.1)
        unet.out[2].bias.zero_()
    return unet


def fp16_state(module) -> dict:
    import torch
    return {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


def load_state(sd, seed: int = 0):
    """A float32 UNet from an fp16 state dict (as ComfyUI upcasts it on a CPU)."""
    unet = build(seed)
    unet.load_state_dict({k: v.float() for k, v in sd.items()})
    return unet


class Lora:
    """Low-rank deltas on every Conv2d/Linear of a UNet (torch parametrizations)."""

    def __init__(self, unet, rank: int = RANK, seed: int = 0):
        import torch
        import torch.nn.utils.parametrize as P
        self.unet, self.rank, self.modules = unet, rank, {}
        gen = torch.Generator().manual_seed(seed)
        delta_cls = _make_delta_class()
        for name, m in list(unet.named_modules()):
            if not isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                continue
            w = m.weight
            fan_in = w[0].numel()
            r = min(rank, w.shape[0], fan_in)
            down = torch.nn.Parameter(torch.randn(r, fan_in, generator=gen) / math.sqrt(fan_in))
            up = torch.nn.Parameter(torch.zeros(w.shape[0], r))
            P.register_parametrization(m, "weight", delta_cls(down, up))
            self.modules[name] = m
        for p in unet.parameters():
            p.requires_grad_(False)
        for p in self.parameters():
            p.requires_grad_(True)

    def parameters(self):
        out = []
        for m in self.modules.values():
            d = m.parametrizations.weight[0]
            out += [d.down, d.up]
        return out

    def state_dict(self) -> dict:
        """kohya-style LoRA tensors (fp16) for LoraLoaderModelOnly."""
        import torch
        out = {}
        for name, m in self.modules.items():
            d = m.parametrizations.weight[0]
            shape = m.parametrizations.weight.original.shape
            key = "lora_unet_" + name.replace(".", "_")
            r = d.down.shape[0]
            down, up = d.down.detach(), d.up.detach()
            if len(shape) == 4:
                down = down.reshape(r, shape[1], shape[2], shape[3])
                up = up.reshape(shape[0], r, 1, 1)
            out[key + ".lora_down.weight"] = down.to(torch.float16).contiguous()
            out[key + ".lora_up.weight"] = up.to(torch.float16).contiguous()
            out[key + ".alpha"] = torch.tensor(float(r), dtype=torch.float16)
        return out


def _make_delta_class():
    import torch

    class Delta(torch.nn.Module):
        def __init__(self, down, up):
            super().__init__()
            self.down, self.up = down, up

        def forward(self, w):
            return w + (self.up @ self.down).reshape(w.shape)
    return Delta


def merge_lora(unet_sd: dict, lora_sd: dict, strength: float = 1.0) -> dict:
    """UNet weights with a LoRA folded in (fp16), the way ComfyUI applies it: W + s * alpha/r * up @ down."""
    import torch
    out = dict(unet_sd)
    for k in unet_sd:
        if not k.endswith(".weight"):
            continue
        key = "lora_unet_" + k[:-len(".weight")].replace(".", "_")
        if key + ".lora_down.weight" not in lora_sd:
            continue
        down = lora_sd[key + ".lora_down.weight"].float()
        up = lora_sd[key + ".lora_up.weight"].float()
        alpha = float(lora_sd[key + ".alpha"])
        delta = (up.flatten(1) @ down.flatten(1)).reshape(unet_sd[k].shape) * (alpha / down.shape[0])
        out[k] = (unet_sd[k].float() + strength * delta).to(torch.float16)
    return out


class Ema:
    def __init__(self, params, decay: float):
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    def update(self, step: int):
        import torch
        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params):
                s.lerp_(p.detach(), 1 - d)

    def copy_to(self):
        import torch
        with torch.no_grad():
            for s, p in zip(self.shadow, self.params):
                p.copy_(s)


def train(unet, params, latents, labels, caption_fn, emb, prompt_index, steps: int, lr: float, seed: int,
          batch: int = 32, ema_decay: float = 0.995, name: str = "unet", log=print) -> dict:
    """Eps training. latents [N, 4, 8, 8] (UNet space), labels [N, 3] (digit, position, colour);
    caption_fn(labels [B, 3], rng) -> list of prompts; emb [P, 77, 768]; prompt_index {prompt: row}.
    Leaves the EMA weights in the model. Returns {"losses", "seconds", "steps"}."""
    import torch
    rng = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    ac = alphas_cumprod()
    params = list(params)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 40) * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * s / steps))))
    ema = Ema(params, ema_decay)
    unet.train()
    losses, recent, t0 = [], [], time.time()
    for step in range(steps):
        idx = rng.randint(0, len(latents), batch)
        x0 = latents[idx]
        prompts = caption_fn(labels[idx], rng)
        ctx = emb[torch.tensor([prompt_index[p] for p in prompts])]
        t = torch.randint(0, T, (batch,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        pred = unet(xt, timesteps=t.float(), context=ctx)
        loss = ((pred - eps) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema.update(step)
        recent.append(loss.item())
        if (step + 1) % 50 == 0 or step + 1 == steps:
            losses.append({"step": step + 1, "loss": round(float(np.mean(recent)), 5)})
            log(f"{name} step {step + 1}/{steps} loss {np.mean(recent):.4f} ({time.time() - t0:.0f} s)")
            recent = []
    ema.copy_to()
    unet.eval()
    return {"losses": losses, "seconds": round(time.time() - t0, 1), "steps": steps}


def sample(unet, emb_pos, emb_neg, n: int, seed: int, steps: int = 20, cfg: float = 4.0):
    """Plain DDIM (eta 0) on the same schedule, for the training run's own checks (not ComfyUI)."""
    import torch
    ac = alphas_cumprod()
    ts = torch.linspace(T - 1, 0, steps).round().long()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, 8, 8, generator=g)
    ctx = torch.cat([emb_pos.expand(n, -1, -1), emb_neg.expand(n, -1, -1)])
    with torch.no_grad():
        for i, t in enumerate(ts):
            a = ac[t]
            e = unet(torch.cat([x, x]), timesteps=torch.full((2 * n,), float(t)), context=ctx)
            e = e[n:] + cfg * (e[:n] - e[n:])
            x0 = (x - (1 - a).sqrt() * e) / a.sqrt()
            a_next = ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * e
    return x

