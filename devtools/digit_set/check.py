"""Check the set with ComfyUI's stock nodes, in-process on the CPU: the UNet is detected as SD15,
and UNETLoader / CheckpointLoaderSimple / VAELoader / CLIPLoader / LoraLoaderModelOnly +
CLIPTextEncode + KSampler + VAEDecode give digit pictures. Writes one labelled PNG per route and a
grid to OUT, and prints the judges' readings as JSON.

    python -m devtools.digit_set.check OUT [--prompt TEXT] [--seed N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import data, install, judges as J, train


def run(out: Path, text: str, seed: int, steps: int = 20, cfg: float = 4.0, set_dir: Path = install.SET_DIR) -> dict:
    from devtools import tiny_models
    tiny_models.ensure_comfy_importable()
    import torch
    torch.set_num_threads(1)
    import comfy.model_detection
    import comfy.utils
    import folder_paths
    import nodes
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="digit_set_check_"))
    inst = install.install(tmp, link=True, checkpoints=True, set_dir=set_dir, warn=lambda m: sys.stderr.write(m + "\n"))
    models = inst["models_dir"]
    for name, sub in (("diffusion_models", "unet"), ("checkpoints", "checkpoints"), ("vae", "vae"),
                      ("loras", "loras"), ("text_encoders", "text_encoders")):
        folder_paths.add_model_folder_path(name, str(models / sub), is_default=True)
    folder_paths.set_output_directory(str(out / "comfy_output"))

    sd = comfy.utils.load_torch_file(str(inst["unet"]))
    detected = type(comfy.model_detection.model_config_from_unet(sd, "")).__name__
    unet = nodes.UNETLoader().load_unet(train.FILES["unet"], "default")[0]
    clip = nodes.CLIPLoader().load_clip(inst["clip"].name, "stable_diffusion")[0]
    vae = nodes.VAELoader().load_vae(train.FILES["vae"])[0]
    ck_model, ck_clip, ck_vae = nodes.CheckpointLoaderSimple().load_checkpoint(inst["checkpoints"]["base"].name)[:3]

    @torch.no_grad()        # stock nodes run under the executor's inference mode; here in-process
    def sample(model, clip_, vae_):
        enc = nodes.CLIPTextEncode()
        pos, neg = enc.encode(clip_, text)[0], enc.encode(clip_, "")[0]
        lat = nodes.EmptyLatentImage().generate(64, 64, 1)[0]
        lat = nodes.KSampler().sample(model, seed, steps, cfg, "euler", "normal", pos, neg, lat, 1.0)[0]
        img = nodes.VAEDecode().decode(vae_, lat)[0][0].detach().numpy()
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)

    routes = {"UNETLoader+CLIPLoader+VAELoader (base)": sample(unet, clip, vae),
              "CheckpointLoaderSimple (base)": sample(ck_model, ck_clip, ck_vae)}
    lora = nodes.LoraLoaderModelOnly()
    for n in train.EXPERTS:
        m = lora.load_lora_model_only(unet, train.FILES["lora"].format(n), 1.0)[0]
        routes[f"UNETLoader+LoraLoaderModelOnly ({n} expert)"] = sample(m, clip, vae)
    judges_path = set_dir / J.FILE
    judges = J.Judges.load(judges_path) if judges_path.is_file() else None
    report = {"prompt": text, "seed": seed, "detected": detected, "routes": {}}
    tiles = []
    for i, (name, img) in enumerate(routes.items()):
        Image.fromarray(img).save(out / f"route_{i}.png")
        report["routes"][name] = {"file": f"route_{i}.png", "judges": judges.read(img) if judges else None}
        tiles.append(np.pad(np.repeat(np.repeat(img, 3, 0), 3, 1), ((4, 4), (4, 4), (0, 0)), constant_values=128))
    Image.fromarray(np.concatenate(tiles, 1)).save(out / "routes.png")
    (out / "check.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--prompt", default=data.prompt(3, 1, 1))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", default=str(install.SET_DIR), help="the set's folder (default: demo_set/)")
    ns = ap.parse_args(argv)
    rep = run(Path(ns.out), ns.prompt, ns.seed, set_dir=Path(ns.set))
    sys.stdout.write(json.dumps(rep, indent=1) + "\n")
    return 0 if rep["detected"] == "SD15" else 1


if __name__ == "__main__":
    sys.exit(main())
