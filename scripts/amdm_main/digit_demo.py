"""The main command's default: the trained digit demo set (demo_set/, devtools/digit_set) in one
ComfyUI prompt that runs every mode on the same seed and prompt.

Members: the base model of the AMDM run is the digit expert (base UNet + its LoRA: knows the digit,
always draws in the centre, in black), the helper is the position expert (base UNet + its LoRA:
knows the position, only ever saw 1s and 7s). For "a digit 3 at the top left" neither gets it right
alone. One prompt, five results with the same seed:

  base alone     stock KSampler, the digit expert
  helper alone   stock KSampler, the position expert
  AMDM           Multi-Model Sampler, both members, spherical aggregation over the early steps
  composition    Multi-Model Sampler + Compose Predictions (composable) over the whole run
  handoff        Multi-Model Sampler + Compose Predictions: the helper on the noisy first part
                 (layout), the base on the rest (shape)

The judges (devtools.digit_set.judges, classifiers trained on held-out digits) read digit, position
and colour from each picture."""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from devtools.digit_set import data, install, judges as J, text as T, train
from devtools.host import REPO_ROOT

UNET = train.FILES["unet"]
VAE = train.FILES["vae"]
LORA = {n: train.FILES["lora"].format(n) for n in train.EXPERTS}
CLIP = T.CLIP_FILE
CLIP_CACHE = Path(os.environ.get("AMDM_DIGIT_SET_MODELS") or REPO_ROOT / ".cache" / "amdm_digits")
BASE_EXPERT, HELPER_EXPERT = "digit", "position"
DEFAULT_TEXT = "a digit 3 at the top left"
DEFAULTS = {"seed": 4, "steps": 20, "size": 64, "cfg": 4.0, "sampler_name": "euler", "scheduler": "normal"}
AMDM = {"window_end": 0.5, "base_weight": 0.5, "helper_weight": 0.866, "deviation": 0.35}
HANDOFF_AT = 0.3            # the helper for the first 30 % of the noise range, then the base
GUIDANCE = {"form": "autoguidance_cfg", "w": 2.0}     # weak-to-strong: the digit expert over the bare base UNet
SUPERPOSE = {"mode": "and", "temperature": 1.0}
MODES = ("base_alone", "helper_alone", "amdm", "compose", "handoff")
EXTRA_MODES = ("guidance", "superposition")           # the benchmark's (bench/digits); not in the main picture
TITLES = {"base_alone": "base alone (digit expert)", "helper_alone": "helper alone (position expert)",
          "amdm": "AMDM (Multi-Model Sampler)", "compose": "composition (composable)",
          "handoff": f"handoff (helper first {int(HANDOFF_AT * 100)} %)",
          "guidance": "model guidance (digit expert over the base)", "superposition": "superposition AND"}
FILES = {"base_alone": "base_alone.png", "helper_alone": "helper_alone.png", "amdm": "amdm.png",
         "compose": "compose.png", "handoff": "handoff.png"}


def server_models(warn=None) -> dict:
    """model_files() plus the set's CLIP-L, generated once into CLIP_CACHE (checked against its digest)."""
    models = model_files()
    clip = CLIP_CACHE / "models" / "text_encoders" / CLIP
    if not clip.is_file() and warn:
        warn(f"generating the demo set's CLIP-L into {clip.parent} (seeded, once)")
    install.ensure_clip(clip, warn=warn)
    models["text_encoders"] = [clip]
    return models


def model_files() -> dict:
    """{ComfyUI models folder: [files]} the local server gets: the committed set + the generated CLIP."""
    files = install.set_files()
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the digit demo set is missing ({', '.join(missing)})")
    out = {}
    for (folder, _), path in files.items():
        out.setdefault(folder, []).append(path)
    return out


def target_of(text: str) -> dict:
    """The aspects a prompt asks for, read from its words ({} entries for what it does not name)."""
    out = {}
    m = re.search(r"\bdigit\s+(\d)\b", text)
    if m:
        out["digit"] = m.group(1)
    for p in data.POSITIONS:
        if re.search(r"\b" + p + r"\b", text):
            out["position"] = p
    for c in data.COLOURS:
        if re.search(r"\b" + c + r"\b", text):
            out["colour"] = c
    return out


@dataclass
class DigitPrompt:
    prompt: dict
    saves: dict         # mode -> SaveImage id
    samplers: dict      # mode -> Multi-Model Sampler id (amdm, compose, handoff)
    text: str
    settings: dict


def build(text: str, prefix: str, seed=None, steps=None, size=None, batch_size: int = 1,
          modes=MODES) -> DigitPrompt:
    """One API prompt that runs `modes` (of MODES + EXTRA_MODES) on the same seed and latent batch."""
    unknown = [m for m in modes if m not in MODES + EXTRA_MODES]
    if unknown:
        raise ValueError(f"unknown digit demo modes {unknown}; choose from {MODES + EXTRA_MODES}")
    s = dict(DEFAULTS)
    s.update({k: v for k, v in (("seed", seed), ("steps", steps), ("size", size)) if v is not None})
    p = {}

    def add(cls, title, **inputs):
        nid = str(len(p) + 1)
        p[nid] = {"class_type": cls, "inputs": inputs, "_meta": {"title": title}}
        return [nid, 0]

    unet = add("UNETLoader", "Base UNet (digits)", unet_name=UNET, weight_dtype="default")
    clip = add("CLIPLoader", "CLIP-L (generated)", clip_name=CLIP, type="stable_diffusion")
    vae = add("VAELoader", "VAE (TAESD format)", vae_name=VAE)
    base = add("LoraLoaderModelOnly", "Digit expert (LoRA)", model=unet, lora_name=LORA[BASE_EXPERT],
               strength_model=1.0)
    helper = add("LoraLoaderModelOnly", "Position expert (LoRA)", model=unet, lora_name=LORA[HELPER_EXPERT],
                 strength_model=1.0)
    pos = add("CLIPTextEncode", "Prompt", text=text, clip=clip)
    neg = add("CLIPTextEncode", "Negative (empty)", text="", clip=clip)
    latent = add("EmptyLatentImage", "Empty latent", width=s["size"], height=s["size"], batch_size=batch_size)
    common = {k: s[k] for k in ("seed", "steps", "cfg", "sampler_name", "scheduler")}
    mm = dict(common, denoise=1.0, base_range_start=0.0, base_range_end=1.0, base_range_unit="percent",
              model=base, positive=pos, negative=neg, latent_image=latent)
    member = dict(cfg=s["cfg"], range_unit="percent", model=helper, positive=pos, negative=neg)

    def ksampler(title, model):
        return add("KSampler", title, model=model, positive=pos, negative=neg, latent_image=latent, denoise=1.0, **common)

    def amdm():
        agg = add("AMDM_SphericalAggregate", "Spherical Aggregate", mode="spherical", window_unit="percent",
                  window_start=0.0, window_end=AMDM["window_end"], initial_noise="independent",
                  step_noise="independent", normalize_weights=True)
        dev = add("AMDM_DeviationOptimize", "Deviation Optimize", step=AMDM["deviation"], mode="absolute",
                  target="faithful", members="base", helper_step=AMDM["deviation"], step_unit="per_sqrt_n")
        m = add("AMDM_Member", "Helper: position expert", weight=AMDM["helper_weight"], range_start=0.0,
                range_end=1.0, **member)
        return add("AMDM_MultiModelSampler", "AMDM: Multi-Model Sampler",
                   **dict(mm, base_weight=AMDM["base_weight"], members=m, aggregation=agg, deviation=dev))

    def compose():
        comp = add("AMDM_ComposePredictions", "Compose Predictions (composable)", mode="composable",
                   window_unit="percent", window_start=0.0, window_end=1.0)
        m = add("AMDM_Member", "Helper (composition)", weight=1.0, range_start=0.0, range_end=1.0, **member)
        return add("AMDM_MultiModelSampler", "Composition", **dict(mm, base_weight=1.0, members=m, aggregation=comp))

    def handoff():
        hand = add("AMDM_ComposePredictions", "Compose Predictions (handoff)", mode="average",
                   window_unit="percent", window_start=0.0, window_end=1.0)
        m = add("AMDM_Member", "Helper (handoff: first part)", weight=1.0, range_start=0.0, range_end=HANDOFF_AT,
                **member)
        return add("AMDM_MultiModelSampler", "Handoff",
                   **dict(mm, base_weight=1.0, base_range_start=HANDOFF_AT, members=m, aggregation=hand))

    def guidance():
        # weak-to-strong: the finetune (digit expert) guided away from the model it was tuned from
        g = add("AMDM_ModelGuidance", "Model Guidance", window_unit="percent", window_start=0.0, window_end=1.0,
                **GUIDANCE)
        m = add("AMDM_Member", "Weak: base UNet", weight=1.0, range_start=0.0, range_end=1.0,
                **dict(member, model=unet))
        return add("AMDM_MultiModelSampler", "Model guidance", **dict(mm, base_weight=1.0, members=m, aggregation=g))

    def superposition():
        sp = add("AMDM_Superposition", "Superposition", **SUPERPOSE)
        m = add("AMDM_Member", "Helper (superposition)", weight=1.0, range_start=0.0, range_end=1.0, **member)
        return add("AMDM_MultiModelSampler", "Superposition", **dict(mm, base_weight=1.0, members=m, aggregation=sp))

    build_mode = {"base_alone": lambda: ksampler("Base alone (digit expert)", base),
                  "helper_alone": lambda: ksampler("Helper alone (position expert)", helper),
                  "amdm": amdm, "compose": compose, "handoff": handoff, "guidance": guidance,
                  "superposition": superposition}
    out, samplers = {m: build_mode[m]() for m in modes}, {}
    saves = {}
    for mode, lat in out.items():
        dec = add("VAEDecode", f"Decode: {mode}", samples=lat, vae=vae)
        saves[mode] = add("SaveImage", TITLES[mode], images=dec, filename_prefix=f"{prefix}_{mode}")[0]
        if mode not in ("base_alone", "helper_alone"):
            samplers[mode] = lat[0]
    return DigitPrompt(p, saves, samplers, text, s)


def evaluations(dp: DigitPrompt, summaries: dict) -> dict:
    """Model evaluations per mode (a KSampler step with CFG counts as one, as the summaries do)."""
    out = {}
    for mode in dp.saves:
        s = summaries.get(mode)
        out[mode] = s["total_evaluations"] if s else dp.settings["steps"]
    return out


def readings(judges: J.Judges | None, pngs: dict, target: dict) -> dict:
    """{mode: {aspect: {"value", "p", "ok"}}} (ok None where the prompt does not name the aspect)."""
    from PIL import Image
    if judges is None:
        return {}
    out = {}
    for mode, png in pngs.items():
        r = judges.read(Image.open(io.BytesIO(png)).convert("RGB"))
        for a, v in r.items():
            v["ok"] = (v["value"] == target[a]) if a in target else None
        out[mode] = r
    return out


def background_share(png: bytes) -> float:
    """The share of pixels in the picture's most common (quantised) colour."""
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) // 32
    keys = (a[..., 0].astype(int) * 64 + a[..., 1] * 8 + a[..., 2]).ravel()
    return float(np.bincount(keys).max() / keys.size)


def comparison(pngs: dict, dp: DigitPrompt, evals: dict, reads: dict):
    """The five pictures side by side, each labelled with its mode, its evaluations and the judges' reading."""
    from PIL import Image, ImageDraw, ImageFont
    try:
        font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    imgs = [Image.open(io.BytesIO(pngs[m])).convert("RGB") for m in MODES]
    side = max(192, imgs[0].width)
    zoom = max(1, side // imgs[0].width)
    imgs = [im.resize((im.width * zoom, im.height * zoom), Image.NEAREST) for im in imgs]
    tile_w = max(im.width for im in imgs) + 24
    pad, head, label_h, foot = 12, 44, 20, 64
    canvas = Image.new("RGB", (pad + tile_w * len(MODES), head + label_h + imgs[0].height + foot + 20), "white")
    d = ImageDraw.Draw(canvas)
    s = dp.settings
    d.text((pad, 6), f'prompt: "{dp.text}"', fill="black", font=font)
    d.text((pad, 25), f"seed {s['seed']}, {s['steps']} steps, {s['sampler_name']}/{s['scheduler']}, cfg {s['cfg']:g}, "
                      f"{s['size']}x{s['size']} (shown at {zoom}x); judges: classifiers trained on held-out digits",
           fill=(60, 60, 60), font=small)
    for i, (mode, im) in enumerate(zip(MODES, imgs)):
        x = pad + i * tile_w
        d.text((x, head), TITLES[mode], fill="black", font=small)
        y = head + label_h
        canvas.paste(im, (x, y))
        y += im.height + 6
        d.text((x, y), f"evaluations: {evals[mode]}", fill=(40, 40, 40), font=small)
        for a, v in reads.get(mode, {}).items():
            y += 16
            mark = "" if v["ok"] is None else (" ok" if v["ok"] else " WRONG")
            colour = (40, 40, 40) if v["ok"] is None else ((0, 120, 0) if v["ok"] else (190, 0, 0))
            d.text((x, y), f"{a}: {v['value']} ({v['p']:.2f}){mark}", fill=colour, font=small)
    return canvas


def summary_lines(dp: DigitPrompt, evals: dict, reads: dict) -> list[str]:
    lines = [f'prompt: "{dp.text}"  (base: {BASE_EXPERT} expert, helper: {HELPER_EXPERT} expert)']
    for mode in MODES:
        r = reads.get(mode, {})
        said = ", ".join(f"{a} {v['value']}" + ("" if v["ok"] is None else (" ok" if v["ok"] else " WRONG"))
                         for a, v in r.items())
        lines.append(f"{TITLES[mode]:<34} evaluations {evals[mode]:>3}   judges: {said}")
    return lines


def load_judges():
    path = install.SET_DIR / J.FILE
    return J.Judges.load(path) if path.is_file() else None
