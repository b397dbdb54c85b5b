"""Train the demo set, deterministically, on one CPU thread: CLIP (generated), prompt embeddings,
VAE, base UNet (two stages), three LoRA finetunes; then write demo_set/ (weights, provenance.json).

    python -m devtools.digit_set.train [--work DIR] [--out demo_set] [--quick] [--judges-only]

Stages are cached in the work folder (default .cache/digit_set/work): a stage whose output is there
is not run again (delete the folder for a fresh run). --quick: a few steps per stage (a smoke test,
written to the work folder only).

The finetunes ("experts") start from the base and each saw a biased slice of the data, with the
other aspects' words in their captions at random (so they learn to ignore them):

  expert    pictures it saw                                  so it knows        and always draws
  digit     every digit, centre, black                       the digit          centre, black
  position  digits 1 and 7 only, every position, black       the position       a 1 or a 7, black
  colour    digits 0 and 8 only, centre, every colour        the colour         a 0 or an 8, centre
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from . import data

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / ".cache" / "digit_set" / "work"
OUT = REPO / "demo_set"

SEEDS = {"vae": 11, "base": 12, "digit": 13, "position": 14, "colour": 15, "pools": 16, "judges": 17,
         "base_refine": 18}
# base_refine: a second cosine cycle from the first stage's fp16 weights (fresh optimizer and EMA).
# Measured (own DDIM, 60 pictures per aspect): after "base" the base read digit 32 %, position 68 %;
# after "base_refine" 78 % and 100 %. The first cycle learns to draw, the second to read.
STEPS = {"vae_crop": 1200, "vae_full": 150, "base": 1000, "base_refine": 1000, "expert": 180}
QUICK = {"vae_crop": 3, "vae_full": 2, "base": 3, "base_refine": 2, "expert": 2}
LR = {"base": 4e-4, "base_refine": 4e-4, "expert": 1e-3}
P_KEEP = 0.85          # base captions: each phrase kept with this probability
P_EMPTY = 0.1          # the empty prompt (classifier-free guidance)
EXPERTS = {
    #            digits         positions                colours              the aspect it knows
    "digit":    (tuple(range(10)), (0,),                 (0,),                0),
    "position": ((1, 7),        tuple(range(5)),         (0,),                1),
    "colour":   ((0, 8),        (0,),                    tuple(range(4)),     2),
}
BASE_FIRST = "base_first_stage.safetensors"      # work folder only: the base before base_refine
FILES = {"unet": "amdm_digits_base.safetensors", "vae": "amdm_digits_vae.safetensors",
         "lora": "amdm_digits_{}.safetensors"}
N_VALUES = (10, len(data.POSITIONS), len(data.COLOURS))


def log(msg):
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    with open(WORK / "train.log", "a") as f:
        f.write(line + "\n")


def base_captions(labels, rng):
    out = []
    for d, p, c in labels.tolist():
        if rng.rand() < P_EMPTY:
            out.append("")
            continue
        keep = rng.rand(3) < P_KEEP
        out.append(data.prompt(d if keep[0] else None, p if keep[1] else None, c if keep[2] else None))
    return out


def expert_captions(aspect: int):
    """The known aspect's true word; the other phrases absent or a random value (half each)."""
    def fn(labels, rng):
        out = []
        for lab in labels.tolist():
            if rng.rand() < P_EMPTY:
                out.append("")
                continue
            vals = []
            for a in range(3):
                if a == aspect:
                    vals.append(lab[a])
                else:
                    vals.append(int(rng.randint(N_VALUES[a])) if rng.rand() < 0.5 else None)
            out.append(data.prompt(*vals))
        return out
    return fn


def save(tensors, path: Path):
    from devtools import tiny_models
    path.parent.mkdir(parents=True, exist_ok=True)
    tiny_models._save(tensors, path)


def load(path: Path):
    from safetensors.torch import load_file
    return load_file(str(path))


def stage_file(name) -> Path:
    # "stage_" prefix: the judges' own file is judges.json in the same folder (a bare name overwrote it)
    return WORK / f"stage_{name}.json"


def stage_done(name):
    p = stage_file(name)
    return json.loads(p.read_text()) if p.is_file() else None


def mark_done(name, record):
    stage_file(name).write_text(json.dumps(record, indent=1) + "\n")


def run(quick: bool, out_dir: Path):
    import torch
    from devtools import tiny_models
    tiny_models.ensure_comfy_importable()
    from . import text, unet as U, vae as V
    torch.set_num_threads(1)
    steps = QUICK if quick else STEPS
    t_all = time.time()
    train_digits = data.Digits("train")

    # 1. CLIP + embeddings
    clip_path = WORK / text.CLIP_FILE
    rec = stage_done("text")
    if rec is None:
        t0 = time.time()
        sha = text.write_clip(clip_path)
        vocab = data.vocabulary()
        emb = text.embed(vocab, clip_path)
        torch.save({"prompts": vocab, "emb": torch.stack([emb[p] for p in vocab])}, WORK / "embeddings.pt")
        rec = {"clip_sha256": sha, "prompts": len(vocab), "seconds": round(time.time() - t0, 1)}
        mark_done("text", rec)
        log(f"text: {len(vocab)} prompts embedded in {rec['seconds']} s, CLIP tensors sha256 {sha[:12]}")
    e = torch.load(WORK / "embeddings.pt")
    emb, prompt_index = e["emb"], {p: i for i, p in enumerate(e["prompts"])}

    # 2. VAE
    rec = stage_done("vae")
    if rec is None:
        r = V.train(train_digits, SEEDS["vae"], steps["vae_crop"], steps["vae_full"], log=log)
        rng = np.random.RandomState(SEEDS["vae"] + 1000)
        probe = V.sample_pictures(train_digits, rng, 256)
        mean, std = V.latent_stats(r["model"], probe)
        sd = V.finalize(r["model"], mean, std)
        save(sd, WORK / FILES["vae"])
        vm = V.load(sd)
        with torch.no_grad():
            x = torch.from_numpy(probe[:64])
            mse = float(((vm.taesd_decoder(vm.taesd_encoder(x)).clamp(0, 1) - x) ** 2).mean())
        rec = {"losses": r["losses"], "seconds": r["seconds"], "latent_mean": mean, "latent_std": std,
               "reconstruction_mse_fp16": mse, "steps": [steps["vae_crop"], steps["vae_full"]]}
        mark_done("vae", rec)
        log(f"vae: {r['seconds']} s, latent mean {mean:.3f} std {std:.3f}, reconstruction mse {mse:.5f}")
    vrec = rec
    vae_model = V.load(load(WORK / FILES["vae"]))
    lat_mean, lat_std = vrec["latent_mean"], vrec["latent_std"]

    # 3. latent pools
    pools_file = WORK / "pools.pt"
    if not pools_file.is_file():
        t0 = time.time()
        rng = np.random.RandomState(SEEDS["pools"])
        pools = {}
        n = len(train_digits)
        reps = 4 if not quick else 1
        idx = np.repeat(np.arange(n), reps)
        pos = rng.randint(0, 5, len(idx))
        col = rng.randint(0, 4, len(idx))
        specs = {"base": (idx, pos, col)}
        for name, (digits, positions, colours, _) in EXPERTS.items():
            keep = np.array([i for i in range(n) if train_digits.label[i] in digits])
            if quick:
                keep = keep[:8]
            combos = [(i, p, c) for i in keep for p in positions for c in colours]
            specs[name] = tuple(np.array(v) for v in zip(*combos))
        for name, (i, p, c) in specs.items():
            pics = data.render_batch(train_digits.ink[i], p, c)
            lat = V.encode_unet_space(vae_model, pics, lat_mean, lat_std)
            labels = torch.from_numpy(np.stack([train_digits.label[i], p, c], 1).astype(np.int64))
            pools[name] = {"latents": lat, "labels": labels}
            log(f"pool {name}: {len(lat)} pictures, latent std {float(lat.std()):.3f}")
        torch.save(pools, pools_file)
        mark_done("pools", {"seconds": round(time.time() - t0, 1), "sizes": {k: len(v["labels"]) for k, v in pools.items()}})
    pools = torch.load(pools_file)

    # 4. base
    rec = stage_done("base")
    if rec is None:
        net = U.build(SEEDS["base"])
        p = pools["base"]
        r = U.train(net, net.parameters(), p["latents"], p["labels"], base_captions, emb, prompt_index,
                    steps["base"], LR["base"], SEEDS["base"], name="base", log=log)
        save(U.fp16_state(net), WORK / BASE_FIRST)
        rec = {"losses": r["losses"], "seconds": r["seconds"], "steps": r["steps"], "lr": LR["base"], "batch": 32}
        mark_done("base", rec)
        preview(WORK / BASE_FIRST, None, "base", emb, prompt_index, vae_model, lat_mean, lat_std)
    if stage_done("base_refine") is None:
        r = refine_base(pools["base"], emb, prompt_index, steps["base_refine"], log=log)
        mark_done("base_refine", {"losses": r["losses"], "seconds": r["seconds"], "steps": r["steps"],
                                  "lr": LR["base_refine"], "batch": 32, "from": "the base stage's fp16 weights"})
        preview(WORK / FILES["unet"], None, "base_refined", emb, prompt_index, vae_model, lat_mean, lat_std)

    # 5. experts (LoRA from the fp16 base)
    base_sd = load(WORK / FILES["unet"])
    for name, (digits, positions, colours, aspect) in EXPERTS.items():
        if stage_done(name) is not None:
            continue
        net = U.load_state(base_sd)
        lora = U.Lora(net, seed=SEEDS[name])
        p = pools[name]
        r = U.train(net, lora.parameters(), p["latents"], p["labels"], expert_captions(aspect), emb, prompt_index,
                    steps["expert"], LR["expert"], SEEDS[name], name=name, log=log)
        save(lora.state_dict(), WORK / FILES["lora"].format(name))
        mark_done(name, {"losses": r["losses"], "seconds": r["seconds"], "steps": r["steps"], "lr": LR["expert"],
                         "batch": 32, "rank": U.RANK, "digits": list(digits), "positions": list(positions),
                         "colours": list(colours), "pictures": len(p["labels"])})
        preview(WORK / FILES["unet"], WORK / FILES["lora"].format(name), name, emb, prompt_index, vae_model,
                lat_mean, lat_std)

    # 6. judges (held-out digits, through the VAE)
    if stage_done("judges") is None:
        rec = fit_judges(vae_model, quick)
        mark_done("judges", {k: v for k, v in rec.items() if k != "models"})

    log(f"training done in {time.time() - t_all:.0f} s (this run; cached stages not counted)")
    if not quick:
        from . import provenance
        provenance.write(WORK, out_dir)


def refine_base(pool, emb, prompt_index, steps: int, log=log) -> dict:
    """Stage base_refine: WORK/BASE_FIRST -> WORK/FILES["unet"], a second cosine cycle on the base pool."""
    from . import unet as U
    net = U.load_state(load(WORK / BASE_FIRST))
    r = U.train(net, net.parameters(), pool["latents"], pool["labels"], base_captions, emb, prompt_index,
                steps, LR["base_refine"], SEEDS["base_refine"], name="base_refine", log=log)
    save(U.fp16_state(net), WORK / FILES["unet"])
    return r


def fit_judges(vae_model, quick: bool, out: Path | None = None) -> dict:
    """Fit the judges on held-out digits passed through the VAE; write them to out (default: WORK)."""
    import torch
    from . import judges as J
    t0 = time.time()

    def roundtrip(pics):
        res = []
        with torch.no_grad():
            for i in range(0, len(pics), 64):
                x = torch.from_numpy(np.ascontiguousarray(pics[i:i + 64]))
                res.append(vae_model.taesd_decoder(vae_model.taesd_encoder(x)).clamp(0, 1).numpy())
        return np.concatenate(res)
    reps = 1 if quick else 4
    tr = J.judge_pictures("judge_train", roundtrip, SEEDS["judges"], reps)
    te = J.judge_pictures("judge_test", roundtrip, SEEDS["judges"] + 1, reps)
    rec = J.fit(*tr, *te, seed=SEEDS["judges"])
    rec["seconds"] = round(time.time() - t0, 1)
    ((out or WORK) / J.FILE).write_text(json.dumps(_rounded(rec)) + "\n")
    log(f"judges: accuracy on judge_test {rec['accuracy']} ({rec['seconds']} s)")
    return rec


def refit_judges(out_dir: Path) -> dict:
    """--judges-only: fit the judges again from the set's own VAE and update its provenance."""
    import torch
    from devtools import tiny_models
    tiny_models.ensure_comfy_importable()
    from . import provenance, vae as V
    torch.set_num_threads(1)
    rec = fit_judges(V.load(load(out_dir / FILES["vae"])), False, out=out_dir)
    prov_path = out_dir / "provenance.json"
    prov = json.loads(prov_path.read_text())
    prov["stages"]["judges"] = {k: v for k, v in rec.items() if k != "models"}
    f = out_dir / "judges.json"
    prov["files"]["judges.json"] = {"bytes": f.stat().st_size, "sha256": provenance.sha256(f)}
    prov_path.write_text(json.dumps(prov, indent=1) + "\n")
    return rec


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    return x


def preview(unet_path, lora_path, name, emb, prompt_index, vae_model, mean, std):
    """A row of samples (own DDIM, not ComfyUI) per prompt, for a quick look."""
    import torch
    from PIL import Image
    from . import unet as U, vae as V
    sd = load(unet_path)
    if lora_path is not None:
        sd = U.merge_lora(sd, load(lora_path))
    net = U.load_state(sd).eval()
    rows = []
    for text in ("a red digit 3 at the top left", "a blue digit 7 at the bottom right", "a green digit 5 at the centre",
                 "a digit 0"):
        x = U.sample(net, emb[prompt_index[text]][None], emb[prompt_index[""]][None], 6, seed=0)
        img = V.decode_unet_space(vae_model, x, mean, std)
        rows.append(torch.cat(list(img), dim=2))
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(grid).save(WORK / f"preview_{name}.png")


def main(argv=None):
    global WORK
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(WORK))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--judges-only", action="store_true", help="fit the judges again from the set's VAE (--out)")
    ns = ap.parse_args(argv)
    WORK = Path(ns.work).resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    if ns.judges_only:
        refit_judges(Path(ns.out).resolve())
        return 0
    log(f"training in {WORK} (python {platform.python_version()}, pid {os.getpid()})")
    run(ns.quick, Path(ns.out).resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
