"""Install the trained demo set into a ComfyUI's models folders.

    python -m devtools.digit_set.install TARGET [--link] [--checkpoints] [--workflows]

TARGET is a ComfyUI folder (the one with main.py, or any --base-directory) or its models/ folder.
Writes:

    models/unet/amdm_digits_base.safetensors             the base UNet             -> UNETLoader
    models/loras/amdm_digits_{digit,position,colour}.safetensors
                                                         the three finetunes       -> LoraLoaderModelOnly
    models/vae/amdm_digits_vae.safetensors               TAESD-format VAE          -> VAELoader
    models/text_encoders/amdm_digits_clip_l.safetensors  generated CLIP-L          -> CLIPLoader (stable_diffusion)
    models/checkpoints/amdm_digits_{base,digit,position,colour}.safetensors   (only with --checkpoints)
                                                         UNet (LoRA folded in) + VAE + CLIP, for
                                                         CheckpointLoaderSimple and the shipped workflows

--workflows (implies --checkpoints) also writes a demo variant of every shipped workflow the set can
run (devtools/digit_set/workflows.py derives them from workflows/ui and workflows/api):

    user/default/workflows/AMDM demo (digits) - <name>.json    UI format: the frontend's Workflows sidebar
    user/default/amdm_digits_api/AMDM demo (digits) - <name>.json   the API-format twins (POST /prompt)
    input/amdm_digits_input.png                                 the img2img workflow's input picture

and names the workflows it skips, with the reason (another model family, or a model the set lacks).
--user-dir / --input-dir: ComfyUI's --user-directory / --input-directory when not under TARGET.

--link makes symbolic links to demo_set/ instead of copies. The CLIP-L is generated here (seeded,
devtools.tiny_models.clip_l_state_dict; it needs ComfyUI importable: TARGET when it is a ComfyUI
folder, else COMFYUI_PATH or the newest host in .cache/hosts/) and checked against the digest in
demo_set/provenance.json (a different digest means the UNets were trained on other embeddings).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from . import text, train

SET_DIR = Path(__file__).resolve().parents[2] / "demo_set"
EXPERT_NAMES = tuple(train.EXPERTS)
CHECKPOINT_FILE = "amdm_digits_{}.safetensors"


def models_dir_of(target: Path) -> Path:
    target = target.expanduser().resolve()
    if target.name == "models" or (target / "checkpoints").is_dir() and not (target / "models").is_dir():
        return target
    return target / "models"


def set_files(set_dir: Path = SET_DIR) -> dict:
    """{(folder, name): source path} of the committed files."""
    out = {("unet", train.FILES["unet"]): set_dir / train.FILES["unet"],
           ("vae", train.FILES["vae"]): set_dir / train.FILES["vae"]}
    for n in EXPERT_NAMES:
        f = train.FILES["lora"].format(n)
        out[("loras", f)] = set_dir / f
    return out


def provenance(set_dir: Path = SET_DIR) -> dict:
    p = set_dir / "provenance.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def ensure_clip(path: Path, set_dir: Path = SET_DIR, warn=None) -> Path:
    """Generate the CLIP-L at path unless a file with the expected digest is there (a stamp beside it)."""
    expected = provenance(set_dir).get("clip", {}).get("tensor_sha256")
    stamp = path.with_name(path.name + ".sha256")
    if path.is_file() and stamp.is_file() and stamp.read_text().strip() == expected:
        return path
    from devtools import tiny_models
    tiny_models.ensure_comfy_importable()
    digest = text.write_clip(path)
    stamp.write_text(digest + "\n")
    if expected and digest != expected and warn:
        warn(f"warning: the generated CLIP-L differs from the one the set was trained with "
             f"({digest[:12]} != {expected[:12]}; another torch version?): prompts may be followed less well")
    return path


def _place(src: Path, dst: Path, link: bool):
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if link:
        dst.symlink_to(src.resolve())
    else:
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


def write_checkpoints(models: Path, clip_path: Path, set_dir: Path = SET_DIR) -> dict:
    """Full SD1.5 checkpoints (UNet with the LoRA folded in + VAE + CLIP-L) for CheckpointLoaderSimple."""
    from safetensors.torch import load_file
    from devtools import tiny_models
    from . import unet as U
    base = load_file(str(set_dir / train.FILES["unet"]))
    vae = load_file(str(set_dir / train.FILES["vae"]))
    clip = load_file(str(clip_path))
    out = {}
    for name in ("base",) + EXPERT_NAMES:
        u = base if name == "base" else U.merge_lora(base, load_file(str(set_dir / train.FILES["lora"].format(name))))
        ckpt = {"model.diffusion_model." + k: t for k, t in u.items()}
        ckpt.update({"first_stage_model." + k: t for k, t in vae.items()})
        ckpt.update({"cond_stage_model.transformer." + k: t for k, t in clip.items()})
        path = models / "checkpoints" / CHECKPOINT_FILE.format(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tiny_models._save(ckpt, path)
        out[name] = path
    return out


def install(target, link: bool = False, checkpoints: bool = False, set_dir: Path = SET_DIR, warn=None,
            workflows: bool = False, user_dir=None, input_dir=None) -> dict:
    """Install into TARGET's models folders; returns {"unet", "vae", "loras": {name: path}, "clip", "checkpoints"}
    (+ "workflows": {name: {"ui", "api"}}, "skipped": {name: reason}, "input_image" with workflows=True)."""
    models = models_dir_of(Path(target))
    checkpoints = checkpoints or workflows
    if (models.parent / "comfy" / "model_management.py").is_file() and "comfy" not in sys.modules \
            and not os.environ.get("COMFYUI_PATH"):
        os.environ["COMFYUI_PATH"] = str(models.parent)
    missing = [str(p) for p in set_files(set_dir).values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"the demo set is incomplete (missing {', '.join(missing)}); "
                                f"train it with python -m devtools.digit_set.train")
    placed = {}
    for (folder, name), src in set_files(set_dir).items():
        dst = models / folder / name
        _place(src, dst, link)
        placed[(folder, name)] = dst
    clip = ensure_clip(models / "text_encoders" / text.CLIP_FILE, set_dir, warn)
    out = {"models_dir": models, "unet": placed[("unet", train.FILES["unet"])],
           "vae": placed[("vae", train.FILES["vae"])],
           "loras": {n: placed[("loras", train.FILES["lora"].format(n))] for n in EXPERT_NAMES},
           "clip": clip, "checkpoints": {}}
    if checkpoints:
        out["checkpoints"] = write_checkpoints(models, clip, set_dir)
    if workflows:
        from . import workflows as W
        w = W.write_variants(models.parent, user_dir=user_dir, input_dir=input_dir)
        out.update(workflows=w["written"], skipped=w["skipped"], input_image=w["input_image"])
        if warn:
            for name, reason in w["skipped"].items():
                warn(f"skipped {name}: {reason}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", help="a ComfyUI folder (or --base-directory), or its models/ folder")
    ap.add_argument("--link", action="store_true", help="symbolic links to demo_set/ instead of copies")
    ap.add_argument("--checkpoints", action="store_true",
                    help="also write full checkpoints (UNet + VAE + CLIP, about 180 MB each) for CheckpointLoaderSimple")
    ap.add_argument("--workflows", action="store_true",
                    help="also write demo variants of the shipped workflows into the ComfyUI's user workflows "
                         "folder (implies --checkpoints)")
    ap.add_argument("--user-dir", help="ComfyUI's user folder (--user-directory), default TARGET/user")
    ap.add_argument("--input-dir", help="ComfyUI's input folder (--input-directory), default TARGET/input")
    ap.add_argument("--set", default=str(SET_DIR), help="the set's folder (default: demo_set/)")
    ns = ap.parse_args(argv)
    out = install(ns.target, link=ns.link, checkpoints=ns.checkpoints, set_dir=Path(ns.set),
                  warn=lambda m: sys.stderr.write(m + "\n"), workflows=ns.workflows, user_dir=ns.user_dir,
                  input_dir=ns.input_dir)

    def s(v):
        return {k: s(x) for k, x in v.items()} if isinstance(v, dict) else (None if v is None else str(v))
    sys.stdout.write(json.dumps(s(out), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
