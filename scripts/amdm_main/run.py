"""The main command, through a headless ComfyUI in API mode.

Default: the trained digit demo set (demo_set/, scripts/amdm_main/digit_demo.py): for a prompt that
no single member gets right ("a digit 3 at the top left"), the base alone, the helper alone, AMDM,
composition and handoff with the same seed, side by side, with the judges' readings.

With --workflow or --ckpt-base/--ckpt-helper: the shipped two-model AMDM workflow (or yours); it
writes the AMDM image, the base-model-alone image (same seed, stock sampler), a side-by-side
comparison and the run summary. Without --ckpt-base/--ckpt-helper that path runs on the project's
generated tiny random checkpoints (noise-like images; the point is the whole path).

Without --server it starts its own ComfyUI (this pack installed, a private base directory, a
random loopback port) and stops it at the end."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from devtools import demo_models

from . import workflow_format, workflow_specs
from devtools.client import ClientError, ComfyClient, PromptFailed, PromptRejected
from . import digit_demo
from .comparison import comparison_image, summary_text
from devtools.host import REPO_ROOT
from devtools.host import comfyui_path as default_comfyui_path
from devtools.server import ComfyServer
from .progress import Progress
from .prompt_edit import (UsageError, add_baseline, apply_overrides, combo_list, find, load_prompt, model_loaders,
                          seed_of)

DEFAULT_WORKFLOW = REPO_ROOT / "workflows" / "api" / f"{workflow_specs.MAIN_WORKFLOW}.json"
DEFAULT_OUTPUT = REPO_ROOT / "output" / "amdm_demo"
DEMO_CACHE = Path(os.environ.get("AMDM_DEMO_MODELS") or REPO_ROOT / ".cache" / "amdm_demo")
DEMO_SIZE = 128          # the demo models are random: small is enough and fast on a CPU
OUTPUT_FILES = ("amdm.png", "base_alone.png", "comparison.png", "summary.json", "summary.txt")
DIGIT_OUTPUT_FILES = ("comparison.png", "base_alone.png", "helper_alone.png", "amdm.png", "compose.png",
                      "handoff.png", "summary.json", "summary.txt")


# -- the command line ---------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="scripts/run.sh",
        description="Run AMDM in a headless ComfyUI (API mode). Default: the trained digit demo set, every mode "
                    "(base alone, helper alone, AMDM, composition, handoff) side by side with the judges' readings. "
                    "With --workflow or --ckpt-base/--ckpt-helper: the two-model workflow (or yours), the AMDM image, "
                    "the base model alone with the same seed, a side-by-side comparison and the run summary.")
    p.add_argument("--prompt", metavar="TEXT", help=f"the digit demo's prompt (default: \"{digit_demo.DEFAULT_TEXT}\"; "
                                                   f"words: digit 0-9, {', '.join(digit_demo.data.POSITIONS)}, "
                                                   f"{', '.join(digit_demo.data.COLOURS)})")
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
    p.add_argument("--comfyui", metavar="DIR", help="ComfyUI to start (default: $COMFYUI_PATH or the newest host in .cache/hosts/)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the run (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ns = p.parse_args(argv)
    if ns.steps is not None and ns.steps < 1:
        p.error("--steps must be at least 1")
    if ns.size is not None and (ns.size < 64 or ns.size % 8):
        p.error("--size must be a multiple of 8, at least 64")
    if ns.prompt is not None and (ns.workflow or ns.ckpt_base or ns.ckpt_helper):
        p.error("--prompt is for the digit demo (no --workflow, --ckpt-base or --ckpt-helper)")
    return ns


def log(msg):
    sys.stderr.write(f"[amdm] {msg}\n")
    sys.stderr.flush()


# -- where the prompt runs --------------------------------------------------------------------------

@dataclass
class Session:
    """What the command holds while it runs: released (server) or told (client, progress) on the way out."""
    server: ComfyServer | None = None
    client: ComfyClient | None = None
    progress: Progress | None = None

    def close_progress(self):
        if self.progress:
            self.progress.close()


@dataclass
class Target:
    """The server the prompt goes to and the model names it knows them by."""
    client: ComfyClient
    names: dict                   # "base" / "helper" -> checkpoint name
    gligen_name: str | None       # the demo GLIGEN model's name, where the server has it
    object_info: dict | None      # the server's /object_info, where it was read already


def checkpoint_name_on_server(ckpts: list, role: str, given: str | None, demo: str, base_url: str) -> str:
    name = Path(given).name if given else demo
    if name not in ckpts:
        hint = (f"pass --ckpt-{role} with a checkpoint name it lists ({', '.join(ckpts[:5]) or 'none'}"
                f"{', ...' if len(ckpts) > 5 else ''})")
        raise UsageError(f"the ComfyUI at {base_url} has no checkpoint {name!r}; {hint}")
    return name


def connect_to_server(ns, session: Session) -> Target:
    """--server: a running ComfyUI, which must have the pack and the named checkpoints."""
    if ns.cpu or ns.gpu or ns.comfyui:
        raise UsageError("--cpu/--gpu/--comfyui apply to the ComfyUI this command starts, not to --server")
    client = session.client = ComfyClient(ns.server)
    stats = client.check_reachable()
    log(f"using the running ComfyUI at {client.base_url} "
        f"(ComfyUI {stats.get('system', {}).get('comfyui_version', '?')})")
    info = client.object_info()
    if "AMDM_MultiModelSampler" not in info:
        raise UsageError(f"the ComfyUI at {client.base_url} does not have the AMDM pack installed "
                         f"(no AMDM_MultiModelSampler in /object_info)")
    ckpts = combo_list(info, "CheckpointLoaderSimple", "ckpt_name")
    names = {role: checkpoint_name_on_server(ckpts, role, given, demo, client.base_url)
             for role, given, demo in (("base", ns.ckpt_base, demo_models.CONTENT_CKPT),
                                       ("helper", ns.ckpt_helper, demo_models.STYLE_CKPT))}
    gligens = combo_list(info, "GLIGENLoader", "gligen_name")
    gligen_name = demo_models.GLIGEN_FILE if demo_models.GLIGEN_FILE in gligens else None
    return Target(client, names, gligen_name, info)


def resolve_local_file(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"{what} not found: {p}")
    if p.suffix.lower() not in (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft"):
        raise UsageError(f"{what} {p} is not a checkpoint file (.safetensors or .ckpt)")
    return p.resolve()


def local_comfyui(ns) -> Path:
    comfy = Path(ns.comfyui).expanduser() if ns.comfyui else default_comfyui_path()
    if not (comfy / "main.py").is_file():
        raise UsageError(f"no ComfyUI at {comfy} (run scripts/setup_env.sh, or pass --comfyui / set COMFYUI_PATH)")
    return comfy


def copy_example_input(server: ComfyServer, comfy: Path):
    """The image the shipped img2img/inpaint workflows load, into the server's input folder."""
    example = comfy / "input" / workflow_specs.INPUT_IMAGE
    if example.is_file():
        server.prepare()
        shutil.copy(example, server.base_dir / "input" / example.name)


def start_local_server(ns, session: Session, out_dir: Path, use_demo: bool) -> Target:
    """A headless ComfyUI of its own with the pack, the user's or the demo checkpoints and the demo GLIGEN."""
    base_file = resolve_local_file(ns.ckpt_base, "--ckpt-base checkpoint")
    helper_file = resolve_local_file(ns.ckpt_helper, "--ckpt-helper checkpoint")
    comfy = local_comfyui(ns)
    # the demo GLIGEN model also serves GLIGEN workflows run with real checkpoints
    log(f"demo models in {DEMO_CACHE / 'models'} (generated once, no download)")
    demo = demo_models.make_demo_models(DEMO_CACHE, checkpoints=use_demo)
    base_file = base_file or demo["content"]
    helper_file = helper_file or demo["style"]
    models = {"checkpoints": sorted({base_file, helper_file}), "gligen": [demo["gligen"]]}
    out_dir.mkdir(parents=True, exist_ok=True)
    server = session.server = ComfyServer(models=models, comfyui_path=comfy, python=sys.executable,
                                          cpu=True if ns.cpu else (False if ns.gpu else None),
                                          log_path=out_dir / "comfyui.log")
    (out_dir / "comfyui.log").write_text("")
    copy_example_input(server, comfy)
    log(f"starting a headless ComfyUI ({comfy}) with the pack; log: {out_dir / 'comfyui.log'}")
    t0 = time.monotonic()
    client = session.client = server.start()
    if ns.gpu and server.cpu:
        raise UsageError("--gpu: torch in this environment sees no GPU")
    log(f"ComfyUI ready at {client.base_url} in {time.monotonic() - t0:.1f} s ({'CPU' if server.cpu else 'GPU'})")
    return Target(client, {"base": base_file.name, "helper": helper_file.name}, demo["gligen"].name, None)


# -- the prompt -------------------------------------------------------------------------------------

def workflow_path_of(ns) -> Path:
    workflow_path = Path(ns.workflow).expanduser() if ns.workflow else DEFAULT_WORKFLOW
    if not workflow_path.is_file():
        raise UsageError(f"workflow file not found: {workflow_path}")
    workflow_format.load_workflow(workflow_path)   # fail early on a broken file
    return workflow_path


def point_loaders_at(prompt: dict, workflow_path: Path, target: Target):
    """The base and helper checkpoint loaders (and the demo GLIGEN loader) load the target's models."""
    base_loader, helper_loader = model_loaders(prompt)
    if base_loader is None:
        raise UsageError(f"{workflow_path}: found no CheckpointLoaderSimple feeding a Multi-Model Sampler/Guider's "
                         f"base model input")
    prompt[base_loader]["inputs"]["ckpt_name"] = target.names["base"]
    if helper_loader is not None:
        prompt[helper_loader]["inputs"]["ckpt_name"] = target.names["helper"]
    for gid in find(prompt, "GLIGENLoader"):
        if target.gligen_name and prompt[gid]["inputs"]["gligen_name"] == workflow_specs.GLIGEN_MODEL:
            prompt[gid]["inputs"]["gligen_name"] = target.gligen_name


@dataclass
class PreparedPrompt:
    prompt: dict
    size: int | None
    amdm_save: str                # the SaveImage ids of the AMDM image and of the base model alone
    base_save: str


def prepare_prompt(ns, workflow_path: Path, target: Target, use_demo: bool) -> PreparedPrompt:
    """The workflow as an API prompt on the target's models, with the overrides and the base-alone branch."""
    info_cache = {}

    def object_info():
        if "all" not in info_cache:
            info_cache["all"] = target.object_info if target.object_info is not None else target.client.object_info()
        return info_cache["all"]

    prompt = load_prompt(workflow_path, object_info)
    point_loaders_at(prompt, workflow_path, target)
    size = ns.size if ns.size else (DEMO_SIZE if use_demo else None)
    apply_overrides(prompt, seed=ns.seed, steps=ns.steps, size=size)
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    amdm_save, base_save = add_baseline(prompt, f"amdm_main/{run_id}")
    if amdm_save is None:
        raise UsageError(f"{workflow_path}: no Multi-Model Sampler (or Multi-Model Guider with "
                         f"SamplerCustomAdvanced) to compare with the base model alone")
    return PreparedPrompt(prompt, size, amdm_save, base_save)


# -- the run and its outputs ----------------------------------------------------------------------

@dataclass
class Outcome:
    """What the finished run returned."""
    outputs: dict                 # node id -> its ui outputs (/history)
    messages: list                # the prompt's websocket messages
    seconds: float
    summary: dict | None          # the Multi-Model Sampler's amdm_summary and text (None with the guider)
    server_text: str | None


def run_prompt(ns, session: Session, prompt: dict) -> Outcome:
    """Post the prompt and follow it with a progress bar until it is done."""
    session.progress = Progress(prompt, enabled=not ns.quiet)
    t_run = time.monotonic()
    result = session.client.run(prompt, on_message=session.progress, timeout=ns.timeout)
    session.progress.close()
    run_s = time.monotonic() - t_run
    return Outcome(result.outputs, result.messages, run_s, *run_summary(prompt, result.outputs))


def saved_image(client: ComfyClient, outputs: dict, save_id: str) -> bytes:
    images = outputs.get(save_id, {}).get("images") or []
    if not images:
        raise ClientError(f"the run produced no image at node {save_id}")
    im = images[0]
    return client.view(im["filename"], im.get("subfolder", ""), im.get("type", "output"))


def run_summary(prompt: dict, outputs: dict):
    """(the Multi-Model Sampler's amdm_summary, its text), or (None, None) without one."""
    for nid in find(prompt, "AMDM_MultiModelSampler"):
        ui = outputs.get(nid, {})
        if ui.get("amdm_summary"):
            return json.loads(ui["amdm_summary"][0]), (ui.get("text") or [None])[0]
    return None, None


def summary_record(ns, workflow_path: Path, session: Session, target: Target, prepared: PreparedPrompt,
                   use_demo: bool, outcome: Outcome, t_start: float) -> dict:
    """summary.json: what ran where, on which models, the summary, the timings and the prompt posted."""
    server = session.server
    return {
        "workflow": str(workflow_path),
        "server": target.client.base_url,
        "started_server": server is not None,
        "device": None if server is None else ("cpu" if server.cpu else "gpu"),
        "models": target.names,
        "demo_models": use_demo,
        "seed": seed_of(prepared.prompt), "steps": ns.steps, "size": prepared.size,
        "prompt_id": next((d.get("prompt_id") for _, d in outcome.messages if d.get("prompt_id")), None),
        "summary": outcome.summary,
        "summary_text": outcome.server_text,
        "images": {"amdm": "amdm.png", "base_alone": "base_alone.png", "comparison": "comparison.png"},
        "seconds": {"run": round(outcome.seconds, 2), "total": round(time.monotonic() - t_start, 2)},
        "prompt": prepared.prompt,
    }


def write_images(out_dir: Path, amdm_png: bytes, base_png: bytes, summary, note: str):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "amdm.png").write_bytes(amdm_png)
    (out_dir / "base_alone.png").write_bytes(base_png)
    comparison_image(amdm_png, base_png, summary, note).save(out_dir / "comparison.png")


def write_summary(out_dir: Path, record: dict, outcome: Outcome):
    (out_dir / "summary.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (out_dir / "summary.txt").write_text(summary_text(outcome.summary, outcome.server_text) + "\n")


def report_done(out_dir: Path, server_text, t_start: float):
    log(f"done in {time.monotonic() - t_start:.1f} s; wrote to {out_dir}:")
    for f in OUTPUT_FILES:
        sys.stdout.write(f"{out_dir / f}\n")
    if server_text:
        sys.stdout.write(server_text + "\n")


# -- the digit demo (the default) -----------------------------------------------------------------------

def digit_models_on_server(client: ComfyClient, info: dict):
    """--server with the digit demo: the server must list the set's files (installed with devtools.digit_set.install)."""
    if "AMDM_MultiModelSampler" not in info:
        raise UsageError(f"the ComfyUI at {client.base_url} does not have the AMDM pack installed "
                         f"(no AMDM_MultiModelSampler in /object_info)")
    need = [("UNETLoader", "unet_name", digit_demo.UNET), ("VAELoader", "vae_name", digit_demo.VAE),
            ("CLIPLoader", "clip_name", digit_demo.CLIP)] + \
        [("LoraLoaderModelOnly", "lora_name", digit_demo.LORA[n]) for n in (digit_demo.BASE_EXPERT, digit_demo.HELPER_EXPERT)]
    missing = [name for cls, inp, name in need if name not in combo_list(info, cls, inp)]
    if missing:
        raise UsageError(f"the ComfyUI at {client.base_url} lacks the digit demo set ({', '.join(missing)}); install it "
                         f"with: python -m devtools.digit_set.install <that ComfyUI's folder>, or pass --workflow")


def start_digit_server(ns, session: Session, out_dir: Path) -> ComfyClient:
    comfy = local_comfyui(ns)
    models = digit_demo.server_models(warn=log)
    out_dir.mkdir(parents=True, exist_ok=True)
    server = session.server = ComfyServer(models=models, comfyui_path=comfy, python=sys.executable,
                                          cpu=True if ns.cpu else (False if ns.gpu else None),
                                          log_path=out_dir / "comfyui.log")
    (out_dir / "comfyui.log").write_text("")
    log(f"starting a headless ComfyUI ({comfy}) with the pack and the digit demo set; log: {out_dir / 'comfyui.log'}")
    t0 = time.monotonic()
    client = session.client = server.start()
    if ns.gpu and server.cpu:
        raise UsageError("--gpu: torch in this environment sees no GPU")
    log(f"ComfyUI ready at {client.base_url} in {time.monotonic() - t0:.1f} s ({'CPU' if server.cpu else 'GPU'})")
    return client


def run_digit_demo(ns, session: Session, t_start: float) -> int:
    out_dir = Path(ns.output).expanduser().resolve()
    if ns.server:
        if ns.cpu or ns.gpu or ns.comfyui:
            raise UsageError("--cpu/--gpu/--comfyui apply to the ComfyUI this command starts, not to --server")
        client = session.client = ComfyClient(ns.server)
        stats = client.check_reachable()
        log(f"using the running ComfyUI at {client.base_url} "
            f"(ComfyUI {stats.get('system', {}).get('comfyui_version', '?')})")
        digit_models_on_server(client, client.object_info())
    else:
        client = start_digit_server(ns, session, out_dir)
    text = ns.prompt if ns.prompt is not None else digit_demo.DEFAULT_TEXT
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
    dp = digit_demo.build(text, f"amdm_main/{run_id}", seed=ns.seed, steps=ns.steps, size=ns.size)
    log(f'digit demo set: "{text}", base = {digit_demo.BASE_EXPERT} expert, helper = {digit_demo.HELPER_EXPERT} expert, '
        f"{dp.settings['size']}x{dp.settings['size']}, {dp.settings['steps']} steps, seed {dp.settings['seed']}")
    session.progress = Progress(dp.prompt, enabled=not ns.quiet)
    t_run = time.monotonic()
    result = client.run(dp.prompt, on_message=session.progress, timeout=ns.timeout)
    session.progress.close()
    run_s = time.monotonic() - t_run
    pngs = {mode: saved_image(client, result.outputs, sid) for mode, sid in dp.saves.items()}
    summaries, texts = {}, {}
    for mode, nid in dp.samplers.items():
        ui = result.outputs.get(nid, {})
        if ui.get("amdm_summary"):
            summaries[mode] = json.loads(ui["amdm_summary"][0])
            texts[mode] = (ui.get("text") or [None])[0]
    evals = digit_demo.evaluations(dp, summaries)
    target = digit_demo.target_of(text)
    reads = digit_demo.readings(digit_demo.load_judges(), pngs, target)
    out_dir.mkdir(parents=True, exist_ok=True)
    for mode, png in pngs.items():
        (out_dir / digit_demo.FILES[mode]).write_bytes(png)
    digit_demo.comparison(pngs, dp, evals, reads).save(out_dir / "comparison.png")
    lines = digit_demo.summary_lines(dp, evals, reads)
    record = {
        "mode": "digit_set", "server": client.base_url, "started_server": session.server is not None,
        "device": None if session.server is None else ("cpu" if session.server.cpu else "gpu"),
        "text": text, "target": target, "settings": dp.settings, "seed": dp.settings["seed"],
        "size": dp.settings["size"], "steps": dp.settings["steps"],
        "models": {"base": f"{digit_demo.UNET} + {digit_demo.LORA[digit_demo.BASE_EXPERT]}",
                   "helper": f"{digit_demo.UNET} + {digit_demo.LORA[digit_demo.HELPER_EXPERT]}",
                   "vae": digit_demo.VAE, "clip": digit_demo.CLIP},
        "amdm_settings": digit_demo.AMDM, "handoff_at": digit_demo.HANDOFF_AT,
        "evaluations": evals, "judges": reads,
        "background_share": {m: round(digit_demo.background_share(p), 4) for m, p in pngs.items()},
        "summary": summaries.get("amdm"), "summaries": summaries, "summary_text": texts.get("amdm"),
        "images": dict(digit_demo.FILES, comparison="comparison.png"),
        "prompt_id": result.prompt_id,
        "seconds": {"run": round(run_s, 2), "total": round(time.monotonic() - t_start, 2)},
        "prompt": dp.prompt,
    }
    (out_dir / "summary.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (out_dir / "summary.txt").write_text("\n".join(lines + ([texts["amdm"]] if texts.get("amdm") else [])) + "\n")
    log(f"done in {time.monotonic() - t_start:.1f} s; wrote to {out_dir}:")
    for f in DIGIT_OUTPUT_FILES:
        sys.stdout.write(f"{out_dir / f}\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# -- main -------------------------------------------------------------------------------------------

def run_command(ns, session: Session, t_start: float) -> int:
    if not (ns.workflow or ns.ckpt_base or ns.ckpt_helper):
        return run_digit_demo(ns, session, t_start)
    workflow_path = workflow_path_of(ns)
    out_dir = Path(ns.output).expanduser().resolve()
    use_demo = not (ns.ckpt_base and ns.ckpt_helper)
    if ns.server:
        target = connect_to_server(ns, session)
    else:
        target = start_local_server(ns, session, out_dir, use_demo)
    prepared = prepare_prompt(ns, workflow_path, target, use_demo)
    log(f"workflow {workflow_path.name}: base {target.names['base']}, helper {target.names['helper']}"
        + (f", {prepared.size}x{prepared.size}" if prepared.size else ""))
    outcome = run_prompt(ns, session, prepared.prompt)
    amdm_png = saved_image(target.client, outcome.outputs, prepared.amdm_save)
    base_png = saved_image(target.client, outcome.outputs, prepared.base_save)
    note = f"demo models (random weights: noise-like images), seed {seed_of(prepared.prompt)}" if use_demo else ""
    write_images(out_dir, amdm_png, base_png, outcome.summary, note)
    write_summary(out_dir, summary_record(ns, workflow_path, session, target, prepared, use_demo, outcome, t_start),
                  outcome)
    report_done(out_dir, outcome.server_text, t_start)
    return 0


def interrupted(session: Session) -> int:
    session.close_progress()
    if session.client is not None:
        try:
            session.client.interrupt()
        except ClientError:
            pass
    sys.stderr.write("error: interrupted\n")
    return 130


def failed(session: Session, error: Exception, status: int) -> int:
    """One line `error: ...` (and where the log of the ComfyUI it started is, for a failed run)."""
    session.close_progress()
    sys.stderr.write(f"error: {error}\n")
    if status == 1 and session.server is not None:
        sys.stderr.write(f"(ComfyUI log: {session.server.log_path})\n")
    return status


def main(argv=None) -> int:
    ns = parse_args(argv)
    t_start = time.monotonic()
    session = Session()
    try:
        return run_command(ns, session, t_start)
    except KeyboardInterrupt:
        return interrupted(session)
    except (UsageError, FileNotFoundError, workflow_format.WorkflowFormatError) as e:
        return failed(session, e, 2)
    except (PromptRejected, PromptFailed, ClientError) as e:
        return failed(session, e, 1)
    finally:
        if session.server is not None:
            session.server.close()
