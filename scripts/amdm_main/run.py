"""The main command: run the shipped two-model AMDM workflow through a headless ComfyUI in API mode
and write the AMDM image, the base-model-alone image (same seed, stock sampler), a side-by-side
comparison and the run summary to an output folder.

Without --server it starts its own ComfyUI (this pack installed, a private base directory, a
random loopback port) and stops it at the end. Without --ckpt-base/--ckpt-helper it runs on the
project's generated demo models (tiny random SD1.5 checkpoints: images are noise-like; the point is
the whole path, not the picture)."""
from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from . import demo_models, workflow_format, workflow_specs
from .client import Client, ClientError, PromptFailed, PromptRejected
from .local_server import REPO_ROOT, LocalServer, default_comfyui_path

DEFAULT_WORKFLOW = REPO_ROOT / "workflows" / "api" / f"{workflow_specs.MAIN_WORKFLOW}.json"
DEFAULT_OUTPUT = REPO_ROOT / "output" / "amdm_demo"
DEMO_CACHE = Path(os.environ.get("AMDM_DEMO_MODELS") or REPO_ROOT / ".cache" / "amdm_demo")
DEMO_SIZE = 128          # the demo models are random: small is enough and fast on a CPU
MIN_DISPLAY = 256        # the comparison shows small images enlarged (nearest neighbour)


class UsageError(RuntimeError):
    """A one-line problem with what the user asked for (missing file, bad option)."""


# -- the command line ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="scripts/run.sh",
        description="Run the AMDM two-model workflow in a headless ComfyUI (API mode) and write the AMDM image, "
                    "the base model alone with the same seed, a side-by-side comparison and the run summary.")
    p.add_argument("--ckpt-base", metavar="FILE",
                   help="SD1.5 checkpoint for the base (content) model instead of the demo model. With --server: a "
                        "checkpoint name that server lists.")
    p.add_argument("--ckpt-helper", metavar="FILE",
                   help="SD1.5 checkpoint for the helper (style) model instead of the demo model.")
    p.add_argument("--workflow", metavar="FILE", help=f"another workflow, UI or API format (default: "
                                                      f"{DEFAULT_WORKFLOW.relative_to(REPO_ROOT)})")
    p.add_argument("--server", metavar="URL", help="use an already running ComfyUI (with this pack) in API mode "
                                                   "instead of starting one, e.g. http://127.0.0.1:8188")
    p.add_argument("--output", metavar="DIR", default=str(DEFAULT_OUTPUT), help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, help="seed (default: the workflow's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the workflow's)")
    p.add_argument("--size", type=int, help=f"image width and height in pixels (default: {DEMO_SIZE} with the demo "
                                            f"models, the workflow's with your checkpoints)")
    device = p.add_mutually_exclusive_group()
    device.add_argument("--cpu", action="store_true", help="run the local ComfyUI on the CPU even if a GPU exists")
    device.add_argument("--gpu", action="store_true", help="require torch to see a GPU for the local ComfyUI")
    p.add_argument("--comfyui", metavar="DIR", help="ComfyUI to start (default: $COMFYUI_PATH or .cache/ComfyUI)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ns = p.parse_args(argv)
    if ns.steps is not None and ns.steps < 1:
        p.error("--steps must be at least 1")
    if ns.size is not None and (ns.size < 64 or ns.size % 8):
        p.error("--size must be a multiple of 8, at least 64")
    return ns


# -- progress bar ---------------------------------------------------------------------------------

class Progress:
    """A terminal progress bar per node from the websocket's `progress` messages."""

    def __init__(self, prompt: dict, stream=sys.stderr, enabled=True):
        self.prompt, self.stream, self.enabled = prompt, stream, enabled
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.node, self.last_quarter, self.line_open = None, -1, False

    def title(self, node_id) -> str:
        node = self.prompt.get(str(node_id), {})
        return node.get("_meta", {}).get("title") or node.get("class_type", str(node_id))

    def __call__(self, mtype, data):
        if not self.enabled:
            return
        if mtype == "executing" and data.get("node") is not None and self.tty:
            self._write(f"\r\033[K  running {self.title(data['node'])}")
        elif mtype == "progress":
            node, value, total = data.get("node"), data.get("value", 0), max(1, data.get("max", 1))
            if node != self.node:
                self.node, self.last_quarter = node, -1
                if self.tty and self.line_open:
                    self._write("\n")
            frac = min(1.0, value / total)
            if self.tty:
                width = 30
                fill = int(round(frac * width))
                self._write(f"\r\033[K  {self.title(node)[:28]:<28} [{'#' * fill}{'.' * (width - fill)}] "
                            f"{value}/{total}")
            else:
                quarter = int(frac * 4)
                if quarter > self.last_quarter:
                    self.last_quarter = quarter
                    self.stream.write(f"  {self.title(node)}: {value}/{total}\n")
                    self.stream.flush()
        elif mtype in ("execution_success", "execution_error", "execution_interrupted") and self.line_open:
            self._write("\n")
            self.line_open = False

    def _write(self, s):
        self.stream.write(s)
        self.stream.flush()
        self.line_open = not s.endswith("\n")

    def close(self):
        if self.line_open and self.enabled:
            self._write("\n")


def log(msg):
    sys.stderr.write(f"[amdm] {msg}\n")
    sys.stderr.flush()


# -- preparing the prompt -----------------------------------------------------------------------

def find(prompt: dict, class_type: str) -> list[str]:
    return [k for k, v in prompt.items() if v["class_type"] == class_type]


def source(prompt, node_id, input_name):
    v = prompt[node_id]["inputs"].get(input_name)
    return v if isinstance(v, list) else None


def trace_to(prompt, link, class_type):
    """Follow MODEL links (through model patchers such as LoRA loaders) back to a node of class_type."""
    seen = set()
    while link and link[0] not in seen:
        seen.add(link[0])
        node = prompt[link[0]]
        if node["class_type"] == class_type:
            return link[0]
        link = node["inputs"].get("model") if isinstance(node["inputs"].get("model"), list) else None
    return None


def consumers(prompt, node_id, slot=0, class_type=None):
    return [k for k, v in prompt.items() for val in v["inputs"].values()
            if isinstance(val, list) and val[0] == node_id and val[1] == slot
            and (class_type is None or v["class_type"] == class_type)]


def model_loaders(prompt) -> tuple[str | None, str | None]:
    """(base loader id, helper loader id): the CheckpointLoaderSimple feeding the sampler's/guider's
    `model` and the one feeding the first Multi-Model Member's `model`."""
    heads = find(prompt, "AMDM_MultiModelSampler") + find(prompt, "AMDM_MultiModelGuider") + \
        find(prompt, "AMDM_MultiModelSweep")
    base = trace_to(prompt, source(prompt, heads[0], "model"), "CheckpointLoaderSimple") if heads else None
    helper = None
    for m in find(prompt, "AMDM_Member"):
        h = trace_to(prompt, source(prompt, m, "model"), "CheckpointLoaderSimple")
        if h and h != base:
            helper = h
            break
    return base, helper


def add_baseline(prompt: dict, prefix: str) -> tuple[str | None, str | None]:
    """Add the base model alone with the same seed: a stock KSampler next to the Multi-Model
    Sampler (or CFGGuider + SamplerCustomAdvanced next to the Multi-Model Guider) with the base
    member's inputs, decoded with the same VAE. Returns (AMDM SaveImage id, baseline SaveImage id)."""
    next_id = max(int(k) for k in prompt if k.isdigit()) + 1

    def new(class_type, title, **inputs):
        nonlocal next_id
        nid = str(next_id)
        next_id += 1
        prompt[nid] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}
        return nid

    samplers = find(prompt, "AMDM_MultiModelSampler")
    if samplers:
        sid = samplers[0]
        s = prompt[sid]["inputs"]
        alone = new("KSampler", "Base model alone (same seed)", **{k: s[k] for k in (
            "model", "positive", "negative", "latent_image", "seed", "steps", "cfg", "sampler_name", "scheduler",
            "denoise")})
        out_slot, amdm_out = 0, sid
    else:
        guiders = find(prompt, "AMDM_MultiModelGuider")
        advanced = [k for k in find(prompt, "SamplerCustomAdvanced")
                    if guiders and source(prompt, k, "guider") and source(prompt, k, "guider")[0] == guiders[0]]
        if not advanced:
            return None, None
        gi, adv = prompt[guiders[0]]["inputs"], prompt[advanced[0]]["inputs"]
        cfg_guider = new("CFGGuider", "Base model alone: guider", model=gi["model"], positive=gi["positive"],
                         negative=gi["negative"], cfg=gi["cfg"])
        alone = new("SamplerCustomAdvanced", "Base model alone (same noise)",
                    **dict(adv, guider=[cfg_guider, 0]))
        out_slot, amdm_out = 0, advanced[0]
    decodes = consumers(prompt, amdm_out, out_slot, "VAEDecode")
    if not decodes:
        raise UsageError("the workflow does not decode the Multi-Model Sampler's latent (no VAEDecode after it)")
    vae = prompt[decodes[0]]["inputs"]["vae"]
    saves = consumers(prompt, decodes[0], 0, "SaveImage")
    if saves:
        amdm_save = saves[0]
    else:
        amdm_save = new("SaveImage", "AMDM image", images=[decodes[0], 0], filename_prefix=prefix + "_amdm")
    prompt[amdm_save]["inputs"]["filename_prefix"] = prefix + "_amdm"
    dec = new("VAEDecode", "Decode: base alone", samples=[alone, out_slot], vae=vae)
    base_save = new("SaveImage", "Base model alone", images=[dec, 0], filename_prefix=prefix + "_base_alone")
    return amdm_save, base_save


def apply_overrides(prompt: dict, *, seed=None, steps=None, size=None):
    for node in prompt.values():
        ins, ct = node["inputs"], node["class_type"]
        if seed is not None:
            for k in ("seed", "noise_seed"):
                if k in ins and not isinstance(ins[k], list):
                    ins[k] = seed
        if steps is not None and "steps" in ins and not isinstance(ins["steps"], list) and ct not in (
                "KSamplerAdvanced",):
            ins["steps"] = steps
        if size is not None and ct in ("EmptyLatentImage", "ImageScale"):
            ins["width"] = ins["height"] = size
        if size is not None and ct == "GLIGENTextBoxApply":   # boxes were drawn for 512 x 512
            f = size / 512
            for k in ("width", "height", "x", "y"):
                ins[k] = max(8 if k in ("width", "height") else 0, int(ins[k] * f) // 8 * 8)


# -- images and summary ---------------------------------------------------------------------------

def comparison_image(amdm_png: bytes, base_png: bytes, summary: dict | None, caption_extra: str = ""):
    from PIL import Image, ImageDraw, ImageFont

    a = Image.open(io.BytesIO(amdm_png)).convert("RGB")
    b = Image.open(io.BytesIO(base_png)).convert("RGB")
    zoom = max(1, -(-MIN_DISPLAY // max(a.height, 1)))
    if zoom > 1:
        a = a.resize((a.width * zoom, a.height * zoom), Image.NEAREST)
        b = b.resize((b.width * zoom, b.height * zoom), Image.NEAREST)
        caption_extra = (caption_extra + "; " if caption_extra else "") + f"shown at {zoom}x"
    w, h = max(a.width, b.width), max(a.height, b.height)
    pad, head = 12, 34
    lines = summary_lines(summary) + ([caption_extra] if caption_extra else [])
    try:
        font = ImageFont.load_default(size=16)
        small = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    foot = 10 + 18 * len(lines)
    canvas = Image.new("RGB", (2 * w + 3 * pad, head + h + pad + foot), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(((a, "AMDM: base + helper (aggregated)"), (b, "base model alone, same seed"))):
        x = pad + i * (w + pad)
        canvas.paste(img, (x, head))
        draw.text((x, 9), label, fill="black", font=font)
    y = head + h + pad
    for line in lines:
        draw.text((pad, y), line, fill=(40, 40, 40), font=small)
        y += 18
    return canvas


def summary_lines(s: dict | None) -> list[str]:
    if not s:
        return []
    if s.get("window_steps"):
        a, b = s["window_steps"]
        first = (f"window: steps {a}-{b} of {s['steps']}, sigma {s['window_sigmas'][0]:g} -> "
                 f"{s['window_sigmas'][1]:g} ({s['aggregation']})")
    else:
        first = f"no aggregation window in {s['steps']} steps"
    evals = ", ".join(f"{'*' if m['base'] else ''}{m['label']}: {m['evaluations']}" for m in s["members"])
    return [first, f"evaluations: {evals} (* = base)", f"time: {s['seconds']:.2f} s"]


def seed_of(prompt: dict):
    for nid in find(prompt, "AMDM_MultiModelSampler") + find(prompt, "RandomNoise"):
        ins = prompt[nid]["inputs"]
        return ins.get("seed", ins.get("noise_seed"))
    return None


def summary_text(s: dict | None, server_text: str | None) -> str:
    if server_text:
        return server_text
    if s:
        return "\n".join(summary_lines(s))
    return "no run summary: the workflow has no Multi-Model Sampler (the Multi-Model Guider logs its summary on the server)"


# -- the run --------------------------------------------------------------------------------------

def resolve_local_file(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{what} not found: {p}")
    if p.suffix.lower() not in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft"):
        raise UsageError(f"{what} {p} is not a checkpoint file (.safetensors or .ckpt)")
    return p.resolve()


def load_prompt(path: Path, object_info_fn) -> dict:
    data = workflow_format.load_workflow(path)
    if workflow_format.is_api_format(data):
        return copy.deepcopy(data)
    return workflow_format.ui_to_api(data, object_info_fn())


def combo_list(object_info: dict, cls: str, name: str) -> list:
    schema = object_info.get(cls)
    if not schema:
        return []
    spec = schema["input"]["required"].get(name)
    return workflow_format.combo_options(spec) if spec else []


def main(argv=None) -> int:
    ns = parse_args(argv)
    t_start = time.monotonic()
    server = None
    client = None
    progress = None
    try:
        workflow_path = Path(ns.workflow).expanduser() if ns.workflow else DEFAULT_WORKFLOW
        if not workflow_path.is_file():
            raise UsageError(f"workflow file not found: {workflow_path}")
        workflow_format.load_workflow(workflow_path)   # fail early on a broken file
        out_dir = Path(ns.output).expanduser().resolve()
        use_demo = not (ns.ckpt_base and ns.ckpt_helper)

        if ns.server:
            if ns.cpu or ns.gpu or ns.comfyui:
                raise UsageError("--cpu/--gpu/--comfyui apply to the ComfyUI this command starts, not to --server")
            client = Client(ns.server)
            stats = client.check_reachable()
            log(f"using the running ComfyUI at {client.base_url} "
                f"(ComfyUI {stats.get('system', {}).get('comfyui_version', '?')})")
            info = client.object_info()
            if "AMDM_MultiModelSampler" not in info:
                raise UsageError(f"the ComfyUI at {client.base_url} does not have the AMDM pack installed "
                                 f"(no AMDM_MultiModelSampler in /object_info)")
            ckpts = combo_list(info, "CheckpointLoaderSimple", "ckpt_name")
            names = {}
            for role, given, demo in (("base", ns.ckpt_base, demo_models.CONTENT_CKPT),
                                      ("helper", ns.ckpt_helper, demo_models.STYLE_CKPT)):
                name = Path(given).name if given else demo
                if name not in ckpts:
                    hint = (f"pass --ckpt-{role} with a checkpoint name it lists ({', '.join(ckpts[:5]) or 'none'}"
                            f"{', ...' if len(ckpts) > 5 else ''})")
                    raise UsageError(f"the ComfyUI at {client.base_url} has no checkpoint {name!r}; {hint}")
                names[role] = name
            gligens = combo_list(info, "GLIGENLoader", "gligen_name")
            gligen_name = demo_models.GLIGEN_FILE if demo_models.GLIGEN_FILE in gligens else None
        else:
            base_file = resolve_local_file(ns.ckpt_base, "--ckpt-base checkpoint")
            helper_file = resolve_local_file(ns.ckpt_helper, "--ckpt-helper checkpoint")
            comfy = Path(ns.comfyui).expanduser() if ns.comfyui else default_comfyui_path()
            if not (comfy / "main.py").is_file():
                raise UsageError(f"no ComfyUI at {comfy} (run scripts/setup_env.sh, or pass --comfyui / set COMFYUI_PATH)")
            # the demo GLIGEN model also serves GLIGEN workflows run with real checkpoints
            log(f"demo models in {DEMO_CACHE / 'models'} (generated once, no download)")
            demo = demo_models.make_demo_models(DEMO_CACHE, checkpoints=use_demo)
            base_file = base_file or demo["content"]
            helper_file = helper_file or demo["style"]
            models = {"checkpoints": sorted({base_file, helper_file}), "gligen": [demo["gligen"]]}
            out_dir.mkdir(parents=True, exist_ok=True)
            server = LocalServer(models, comfyui_path=comfy, python=sys.executable,
                                 cpu=True if ns.cpu else (False if ns.gpu else None),
                                 log_path=out_dir / "comfyui.log")
            (out_dir / "comfyui.log").write_text("")
            example = comfy / "input" / workflow_specs.INPUT_IMAGE
            if example.is_file():
                server.prepare()
                shutil.copy(example, server.base_dir / "input" / example.name)
            log(f"starting a headless ComfyUI ({comfy}) with the pack; log: {out_dir / 'comfyui.log'}")
            t0 = time.monotonic()
            client = server.start()
            if ns.gpu and server.cpu:
                raise UsageError("--gpu: torch in this environment sees no GPU")
            log(f"ComfyUI ready at {client.base_url} in {time.monotonic() - t0:.1f} s "
                f"({'CPU' if server.cpu else 'GPU'})")
            names = {"base": base_file.name, "helper": helper_file.name}
            gligen_name = demo["gligen"].name
            info = None

        info_cache = {}

        def object_info():
            if "all" not in info_cache:
                info_cache["all"] = info if info is not None else client.object_info()
            return info_cache["all"]

        prompt = load_prompt(workflow_path, object_info)
        base_loader, helper_loader = model_loaders(prompt)
        if base_loader is None:
            raise UsageError(f"{workflow_path}: found no CheckpointLoaderSimple feeding a Multi-Model Sampler/Guider's "
                             f"base model input")
        prompt[base_loader]["inputs"]["ckpt_name"] = names["base"]
        if helper_loader is not None:
            prompt[helper_loader]["inputs"]["ckpt_name"] = names["helper"]
        for gid in find(prompt, "GLIGENLoader"):
            if gligen_name and prompt[gid]["inputs"]["gligen_name"] == workflow_specs.GLIGEN_MODEL:
                prompt[gid]["inputs"]["gligen_name"] = gligen_name
        size = ns.size if ns.size else (DEMO_SIZE if use_demo else None)
        apply_overrides(prompt, seed=ns.seed, steps=ns.steps, size=size)
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        amdm_save, base_save = add_baseline(prompt, f"amdm_main/{run_id}")
        if amdm_save is None:
            raise UsageError(f"{workflow_path}: no Multi-Model Sampler (or Multi-Model Guider with "
                             f"SamplerCustomAdvanced) to compare with the base model alone")

        log(f"workflow {workflow_path.name}: base {names['base']}, helper {names['helper']}"
            + (f", {size}x{size}" if size else ""))
        progress = Progress(prompt, enabled=not ns.quiet)
        t_run = time.monotonic()
        entry, messages = client.run(prompt, on_message=progress, timeout=ns.timeout)
        progress.close()
        run_s = time.monotonic() - t_run
        outputs = entry.get("outputs", {})

        def image_bytes(save_id):
            images = outputs.get(save_id, {}).get("images") or []
            if not images:
                raise ClientError(f"the run produced no image at node {save_id}")
            im = images[0]
            return client.view(im["filename"], im.get("subfolder", ""), im.get("type", "output"))

        amdm_png, base_png = image_bytes(amdm_save), image_bytes(base_save)
        summary, server_text = None, None
        for nid in find(prompt, "AMDM_MultiModelSampler"):
            ui = outputs.get(nid, {})
            if ui.get("amdm_summary"):
                summary = json.loads(ui["amdm_summary"][0])
                server_text = (ui.get("text") or [None])[0]
                break

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "amdm.png").write_bytes(amdm_png)
        (out_dir / "base_alone.png").write_bytes(base_png)
        note = f"demo models (random weights: noise-like images), seed {seed_of(prompt)}" if use_demo else ""
        comparison_image(amdm_png, base_png, summary, note).save(out_dir / "comparison.png")
        record = {
            "workflow": str(workflow_path),
            "server": client.base_url,
            "started_server": server is not None,
            "device": None if server is None else ("cpu" if server.cpu else "gpu"),
            "models": names,
            "demo_models": use_demo,
            "seed": seed_of(prompt), "steps": ns.steps, "size": size,
            "prompt_id": next((d.get("prompt_id") for _, d in messages if d.get("prompt_id")), None),
            "summary": summary,
            "summary_text": server_text,
            "images": {"amdm": "amdm.png", "base_alone": "base_alone.png", "comparison": "comparison.png"},
            "seconds": {"run": round(run_s, 2), "total": round(time.monotonic() - t_start, 2)},
            "prompt": prompt,
        }
        (out_dir / "summary.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        (out_dir / "summary.txt").write_text(summary_text(summary, server_text) + "\n")
        log(f"done in {time.monotonic() - t_start:.1f} s; wrote to {out_dir}:")
        for f in ("amdm.png", "base_alone.png", "comparison.png", "summary.json", "summary.txt"):
            sys.stdout.write(f"{out_dir / f}\n")
        if server_text:
            sys.stdout.write(server_text + "\n")
        return 0
    except KeyboardInterrupt:
        if progress:
            progress.close()
        if client is not None:
            try:
                client.interrupt()
            except ClientError:
                pass
        sys.stderr.write("error: interrupted\n")
        return 130
    except (UsageError, FileNotFoundError, workflow_format.WorkflowFormatError) as e:
        if progress:
            progress.close()
        sys.stderr.write(f"error: {e}\n")
        return 2
    except (PromptRejected, PromptFailed, ClientError) as e:
        if progress:
            progress.close()
        sys.stderr.write(f"error: {e}\n")
        if server is not None:
            sys.stderr.write(f"(ComfyUI log: {server.log_path})\n")
        return 1
    finally:
        if server is not None:
            server.close()
