"""Copy the trained files from the work folder to demo_set/ and write provenance.json."""
from __future__ import annotations

import hashlib
import json
import platform
import shutil
from pathlib import Path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write(work: Path, out: Path) -> dict:
    import sklearn
    import torch
    from . import data, text, train
    out.mkdir(parents=True, exist_ok=True)
    files = [train.FILES["unet"], train.FILES["vae"]] + [train.FILES["lora"].format(n) for n in train.EXPERTS]
    if (work / "judges.json").is_file():
        files.append("judges.json")
    for f in files:
        shutil.copyfile(work / f, out / f)
    stages = {n: train.stage_done(n) for n in ["text", "vae", "pools", "base", "base_refine", *train.EXPERTS, "judges"]}
    stages = {n: rec for n, rec in stages.items() if rec is not None}
    record = {
        "command": "python -m devtools.digit_set.train   (ComfyUI on sys.path: COMFYUI_PATH or .cache/hosts/)",
        "torch": torch.__version__, "scikit_learn": sklearn.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "machine": platform.machine(),
        "data": {"source": data.SOURCE, "splits": {k: list(v) for k, v in data.SPLITS.items()},
                 "picture": "64x64 RGB, white background, 32x32 digit", "positions": list(data.POSITIONS),
                 "colours": list(data.COLOURS)},
        "seeds": train.SEEDS, "steps": train.STEPS, "learning_rates": train.LR,
        "experts": {n: {"digits": list(v[0]), "positions": [data.POSITIONS[p] for p in v[1]],
                        "colours": [data.COLOURS[c] for c in v[2]], "knows": ("digit", "position", "colour")[v[3]]}
                    for n, v in train.EXPERTS.items()},
        "schedule": "ComfyUI ModelSamplingDiscrete (SD1.5): betas linspace(sqrt(0.00085), sqrt(0.012), 1000)^2, eps objective",
        "clip": {"source": "devtools.digit_set.text.clip_state_dict() (generated CLIP-L, seed "
                           f"{text.CLIP_SEED}: random word embeddings averaged into every later token by "
                           "layer 0, the other layers pass-through; fp8 2-D weights), generated at install time",
                 "tensor_sha256": stages["text"]["clip_sha256"]},
        "stages": stages,
        "seconds_total": round(sum(s.get("seconds", 0) for s in stages.values()), 1),
        "files": {f: {"bytes": (out / f).stat().st_size, "sha256": sha256(out / f)} for f in files},
    }
    (out / "provenance.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
