"""Demo variants of the shipped workflows for the digit demo set (install --workflows).

Each variant is derived from the shipped files (workflows/ui/<name>.json and its API twin
workflows/api/<name>.json), never written by hand: the same edits, chosen by node class and input
name, are applied to the API twin's inputs and to the UI file's positional widgets_values (the
position of each named widget is found by lining the UI node's values up with its API twin's
widget inputs; the only UI entries with no API input are the frontend's "control after generate"
and "image upload" extras).

  CheckpointLoaderSimple.ckpt_name   the base loader (whose MODEL feeds the sampler/guider/sweep) ->
                                     the digit expert's checkpoint; a helper's (feeds a Member) ->
                                     the position expert's (the bare base model in model guidance,
                                     where the helper is the weak model), a third one's -> colour's
  CLIPTextEncode.text                a prompt linked to a negative input -> ""; else the workflow's
                                     digit prompt ("a digit 3 at the top left"; "a digit 3" for
                                     model guidance; "a red digit 3 at the top left" with the colour
                                     expert as a member)
  EmptyLatentImage / ImageScale      width, height -> 64
  cfg (any node)                     above 1 -> 4 (cfg 1, e.g. model guidance's weak member, stays)
  LoadImage.image                    a digit picture the installer writes to input/ (a held-out
                                     scikit-learn digit 3, drawn as the set's data at the top left)
  SaveImage.filename_prefix          amdm/<x> -> amdm_digits/<x>
  MarkdownNote (UI only)             a demo paragraph in front of the original note

A workflow with a node the set cannot feed is skipped with the reason: another model family (the
text encoder loader's type, e.g. flux, wan), or a model file the set does not have (GLIGEN).
"""
from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

from . import install, text

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "workflows"
PREFIX = "AMDM demo (digits) - "
USER_WORKFLOWS = Path("user") / "default" / "workflows"      # the frontend's Workflows sidebar (GET /userdata?dir=workflows)
API_FOLDER = Path("user") / "default" / "amdm_digits_api"     # API twins: outside the sidebar (it cannot open them)
INPUT_IMAGE = "amdm_digits_input.png"
SIZE = 64
CFG = 4.0
DIGIT_PROMPT = "a digit 3 at the top left"
GUIDANCE_PROMPT = "a digit 3"
COLOUR_PROMPT = "a red digit 3 at the top left"
SAMPLERS = ("AMDM_MultiModelSampler", "AMDM_MultiModelGuider", "AMDM_MultiModelSweep", "KSampler",
            "KSamplerAdvanced", "CFGGuider")
CONTROL_EXTRAS = ("fixed", "increment", "decrement", "randomize", "image")
# inputs that name a file: after the edits each must name one the installer wrote, else the workflow is skipped
FILE_INPUTS = ("ckpt_name", "unet_name", "lora_name", "vae_name", "clip_name", "clip_name1", "clip_name2",
               "gligen_name", "control_net_name", "style_model_name", "clip_vision_name", "image")
FAMILIES = {"flux": "Flux.1", "wan": "Wan 2.x", "sd3": "SD3", "sdxl": "SDXL", "hunyuan_video": "HunyuanVideo"}
# a held-out digit (scikit-learn load_digits() index 59, a 3; index % 10 == 9: the judges' test split,
# never seen in training), 8x8 ink in 0..16; the test checks it against scikit-learn
INPUT_DIGIT_INDEX = 59
INPUT_DIGIT = ((0, 1, 10, 15, 11, 1, 0, 0), (0, 3, 8, 8, 11, 12, 0, 0), (0, 0, 0, 5, 14, 15, 1, 0),
               (0, 0, 0, 11, 15, 2, 0, 0), (0, 0, 0, 4, 15, 2, 0, 0), (0, 0, 0, 0, 12, 10, 0, 0),
               (0, 0, 3, 4, 10, 16, 1, 0), (0, 0, 13, 16, 15, 10, 0, 0))
INPUT_POSITION, INPUT_COLOUR = 1, 0      # top left, black


def checkpoint(expert: str) -> str:
    return install.CHECKPOINT_FILE.format(expert)


def installed_files() -> set:
    """Every file name the installer writes (with --checkpoints) and the input picture."""
    names = {checkpoint(n) for n in ("base",) + install.EXPERT_NAMES}
    names |= {name for _, name in install.set_files()} | {text.CLIP_FILE, INPUT_IMAGE}
    return names


def shipped_names(shipped: Path = SHIPPED) -> list:
    return sorted(p.stem for p in (shipped / "ui").glob("*.json"))


def variant_file(name: str) -> str:
    return f"{PREFIX}{name}.json"


def _is_link(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and isinstance(v[1], int)


def widget_positions(ui_node: dict, api_node: dict) -> dict:
    """{input name: index in the UI node's widgets_values}, lined up with the API twin's widget inputs."""
    values = ui_node.get("widgets_values") or []
    if isinstance(values, dict):
        return {k: k for k in values}
    names = [k for k, v in api_node["inputs"].items() if not _is_link(v)]
    pos, j = {}, 0
    for name in names:
        want = api_node["inputs"][name]
        while j < len(values) and values[j] != want:
            if values[j] not in CONTROL_EXTRAS:
                raise ValueError(f"node {ui_node['id']} ({ui_node['type']}): UI value {values[j]!r} does not line up "
                                 f"with the API twin's {name}={want!r}")
            j += 1
        if j == len(values):
            raise ValueError(f"node {ui_node['id']} ({ui_node['type']}): no UI widget value for {name}={want!r}")
        pos[name] = j
        j += 1
    if any(v not in CONTROL_EXTRAS for v in values[j:]):
        raise ValueError(f"node {ui_node['id']} ({ui_node['type']}): UI widget values {values[j:]} left over")
    return pos


def _consumers(api: dict) -> dict:
    """{(node id, output slot): [(consumer id, input name)]}."""
    out = {}
    for nid, n in api.items():
        for name, v in n["inputs"].items():
            if _is_link(v):
                out.setdefault((v[0], v[1]), []).append((nid, name))
    return out


def _roles(api: dict) -> tuple:
    """(checkpoint name per loader id, prompt text per CLIPTextEncode id)."""
    cons = _consumers(api)
    classes = {n["class_type"] for n in api.values()}
    guidance = "AMDM_ModelGuidance" in classes
    helpers = ["base"] if guidance else ["position", "colour"]
    ckpts, helper_loaders = {}, []
    for nid, n in sorted(api.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
        if n["class_type"] != "CheckpointLoaderSimple":
            continue
        users = {api[c]["class_type"] for c, name in cons.get((nid, 0), []) if name == "model"}
        if users & set(SAMPLERS):
            ckpts[nid] = checkpoint("digit")
        elif "AMDM_Member" in users:
            helper_loaders.append(nid)
    for i, nid in enumerate(helper_loaders):
        if i < len(helpers):
            ckpts[nid] = checkpoint(helpers[i])
    positive = GUIDANCE_PROMPT if guidance else (
        COLOUR_PROMPT if checkpoint("colour") in ckpts.values() else DIGIT_PROMPT)
    prompts = {}
    for nid, n in api.items():
        if n["class_type"] != "CLIPTextEncode":
            continue
        negative = any(name == "negative" for _, name in _follow_conditioning(api, cons, nid))
        prompts[nid] = "" if negative else positive
    return ckpts, prompts


def _follow_conditioning(api, cons, nid, seen=None):
    """The (node, input) pairs a conditioning reaches, through nodes that pass conditioning on."""
    seen = set() if seen is None else seen
    out = []
    for c, name in cons.get((nid, 0), []):
        if (c, name) in seen:
            continue
        seen.add((c, name))
        out.append((c, name))
        if name in ("conditioning", "conditioning_to", "conditioning_1", "conditioning_2"):
            out += _follow_conditioning(api, cons, c, seen)
    return out


def skip_reason(api: dict) -> str | None:
    """Why the set cannot run this workflow (None: it can)."""
    for n in api.values():
        if n["class_type"] in ("CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader") \
                and n["inputs"].get("type", "stable_diffusion") != "stable_diffusion":
            fam = n["inputs"]["type"]
            return (f"another model family ({FAMILIES.get(fam, fam)}: its text encoder loader has type {fam!r}); "
                    f"the digit set is SD1.5")
    for nid, n in api.items():
        if n["class_type"] == "GLIGENLoader":
            return "needs a GLIGEN model (models/gligen); the digit set has none"
    return None


def edit_inputs(api: dict) -> dict:
    """{node id: {input name: new value}} for the API twin (the same edits go to the UI file)."""
    ckpts, prompts = _roles(api)
    edits = {}
    for nid, n in api.items():
        cls, inp, e = n["class_type"], n["inputs"], {}
        if nid in ckpts:
            e["ckpt_name"] = ckpts[nid]
        if nid in prompts:
            e["text"] = prompts[nid]
        if cls in ("EmptyLatentImage", "ImageScale"):
            e.update(width=SIZE, height=SIZE)
        if cls == "LoadImage":
            e["image"] = INPUT_IMAGE
        if isinstance(inp.get("cfg"), (int, float)) and not isinstance(inp["cfg"], bool) and inp["cfg"] > 1.0:
            e["cfg"] = CFG
        if cls == "SaveImage" and isinstance(inp.get("filename_prefix"), str):
            e["filename_prefix"] = "amdm_digits/" + inp["filename_prefix"].split("/", 1)[-1]
        edits[nid] = {k: v for k, v in e.items() if inp.get(k) != v}
    return edits


def unresolved_files(api: dict) -> list:
    """'class.input=value' for each file name input that names no installed file."""
    known = installed_files()
    return [f"{n['class_type']}.{k}={v}" for n in api.values() for k, v in n["inputs"].items()
            if k in FILE_INPUTS and isinstance(v, str) and v not in known]


def demo_note(name: str, api: dict) -> str:
    ckpts, prompts = _roles(api)
    models = ", ".join(sorted(set(ckpts.values())))
    positive = sorted({t for t in prompts.values() if t})
    return (f"**Demo variant on the digit demo set** (docs/demo-set.md), derived from the shipped `{name}`: "
            f"checkpoints {models} (written by `python -m devtools.digit_set.install <ComfyUI> --workflows`), "
            f"64x64 latents, cfg {CFG:g}, prompt {', '.join(repr(p) for p in positive)}, empty negative. "
            "The set draws one digit on white: prompt words are digit 0-9; centre, top left, top right, "
            "bottom left, bottom right; black, red, green, blue. The original note follows (its file names "
            "are replaced here).\n\n---\n\n")


def make_variant(name: str, ui: dict, api: dict) -> tuple:
    """(UI variant, API variant) of one shipped workflow; ValueError with the reason if the set cannot run it."""
    reason = skip_reason(api)
    if reason:
        raise ValueError(reason)
    edits = edit_inputs(api)
    api2 = copy.deepcopy(api)
    for nid, e in edits.items():
        api2[nid]["inputs"].update(e)
    missing = unresolved_files(api2)
    if missing:
        raise ValueError(f"needs files the digit set does not have ({', '.join(missing)})")
    ui2 = copy.deepcopy(ui)
    nodes = {str(n["id"]): n for n in ui2["nodes"]}
    for nid, e in edits.items():
        if not e:
            continue
        node = nodes[nid]
        pos = widget_positions(node, api[nid])
        for k, v in e.items():
            node["widgets_values"][pos[k]] = v
    note = demo_note(name, api)
    for n in ui2["nodes"]:
        if n["type"] in ("MarkdownNote", "Note") and n.get("widgets_values"):
            n["widgets_values"][0] = note + n["widgets_values"][0]
    ui2["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "amdm-digit-demo/" + name))
    extra = ui2.setdefault("extra", {})
    if "amdm_title" in extra:
        extra["amdm_title"] = "demo (digits): " + extra["amdm_title"]
    return ui2, api2


def variants(shipped: Path = SHIPPED) -> tuple:
    """({name: (UI variant, API variant)}, {name: why skipped}) for every shipped workflow."""
    made, skipped = {}, {}
    for name in shipped_names(shipped):
        ui = json.loads((shipped / "ui" / f"{name}.json").read_text())
        api = json.loads((shipped / "api" / f"{name}.json").read_text())
        try:
            made[name] = make_variant(name, ui, api)
        except ValueError as e:
            skipped[name] = str(e)
    return made, skipped


def write_input_image(path: Path) -> Path:
    """The img2img input: the held-out digit drawn as the set's pictures are (data.upscale + data.render)."""
    import numpy as np
    from PIL import Image
    from . import data
    ink = data.upscale(np.asarray([INPUT_DIGIT], np.float32) / 16.0)[0]
    img = data.render(ink, INPUT_POSITION, INPUT_COLOUR)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(img.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


def write_variants(base_dir: Path, user_dir: Path | None = None, input_dir: Path | None = None,
                   shipped: Path = SHIPPED) -> dict:
    """Write the variants into a ComfyUI base directory: UI files into <user>/default/workflows/, API
    twins into <user>/default/amdm_digits_api/, the img2img input picture into input/."""
    base_dir = Path(base_dir)
    user = Path(user_dir) if user_dir else base_dir / "user"
    ui_dir = user / USER_WORKFLOWS.relative_to("user")
    api_dir = user / API_FOLDER.relative_to("user")
    made, skipped = variants(shipped)
    ui_dir.mkdir(parents=True, exist_ok=True)
    api_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (ui, api) in made.items():
        pu, pa = ui_dir / variant_file(name), api_dir / variant_file(name)
        pu.write_text(json.dumps(ui, indent=2, ensure_ascii=False) + "\n")
        pa.write_text(json.dumps(api, indent=2, ensure_ascii=False) + "\n")
        written[name] = {"ui": pu, "api": pa}
    image = None
    if any(n["class_type"] == "LoadImage" for _, api in made.values() for n in api.values()):
        image = write_input_image((Path(input_dir) if input_dir else base_dir / "input") / INPUT_IMAGE)
    return {"written": written, "skipped": skipped, "input_image": image}

