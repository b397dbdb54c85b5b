"""The README's main command, `bash scripts/run.sh`, run for real: it sets up (fast path here),
starts its own headless ComfyUI with the pack and, by default, runs the trained digit demo set
(demo_set/): base alone, helper alone, AMDM, composition and handoff for one prompt, side by side,
with the judges' readings; the pictures are digits on a clean background, not noise. With
--ckpt-helper (a checkpoint file) or --workflow it runs the shipped two-model workflow on the tiny
random demo models and writes the AMDM image, the base model alone (same seed), the comparison and
the summary. Also --server against the session's running ComfyUI, the UI-format --workflow, and
the one-line errors for a missing file, an unreachable server and a server without the digit set.

AMDM_DEMO_MODELS points the command at the demo models the session already generated (the command
would otherwise generate them once into .cache/amdm_demo)."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

import api_helpers as ah
import harness

RUN_SH = ah.REPO_ROOT / "scripts" / "run.sh"
MAIN_PY = ah.REPO_ROOT / "scripts" / "main.py"


@pytest.fixture(scope="module")
def demo_env(tiny_model_set):
    ah.ensure_demo_models(tiny_model_set)
    env = dict(os.environ, AMDM_DEMO_MODELS=str(tiny_model_set.base_dir), PYTHONUNBUFFERED="1")
    env.setdefault("COMFYUI_PATH", str(harness.default_comfyui_path()))
    return env


def run(args, env, timeout=600, via_run_sh=False):
    cmd = (["bash", str(RUN_SH)] if via_run_sh else [sys.executable, str(MAIN_PY)]) + [str(a) for a in args]
    return subprocess.run(cmd, cwd=ah.REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def check_outputs(out, size):
    files = {f: out / f for f in ("amdm.png", "base_alone.png", "comparison.png", "summary.json", "summary.txt")}
    assert all(p.is_file() for p in files.values()), sorted(os.listdir(out))
    amdm, alone = Image.open(files["amdm.png"]), Image.open(files["base_alone.png"])
    assert amdm.size == alone.size == (size, size)
    assert amdm.convert("RGB").tobytes() != alone.convert("RGB").tobytes(), "AMDM should change the image"
    comp = Image.open(files["comparison.png"])
    zoom = max(1, -(-256 // size))
    assert comp.width == 2 * size * zoom + 3 * 12 and comp.height > size * zoom
    # the two halves are the two images, side by side (left AMDM, right base alone)
    left = comp.crop((12, 34, 12 + size * zoom, 34 + size * zoom)).resize((size, size), Image.NEAREST)
    assert left.tobytes() == amdm.convert("RGB").tobytes()
    record = json.loads(files["summary.json"].read_text())
    s = record["summary"]
    assert s["window_steps"] == [1, 3] and s["members"][0]["base"]
    assert [m["evaluations"] for m in s["members"]] == [s["steps"], 4]
    assert files["summary.txt"].read_text().startswith("AMDM: aggregated steps 1-3 of")
    # the baseline is the stock KSampler with the base member's inputs and the same seed
    prompt = record["prompt"]
    (sampler,) = [n["inputs"] for n in prompt.values() if n["class_type"] == "AMDM_MultiModelSampler"]
    (alone_node,) = [n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler"]
    for k in ("model", "positive", "negative", "latent_image", "seed", "steps", "cfg", "sampler_name", "scheduler"):
        assert alone_node[k] == sampler[k], k
    return record


def test_main_command_starts_its_own_server(demo_env, tmp_path):
    """README command one, with a user checkpoint file as the helper (a renamed copy)."""
    ckpt_dir = tmp_path / "my_models"
    ckpt_dir.mkdir()
    helper = ckpt_dir / "my_style_model.safetensors"
    shutil.copy(ah.demo_models.paths(demo_env["AMDM_DEMO_MODELS"])["style"], helper)
    out = tmp_path / "out"
    proc = run(["--output", out, "--steps", 6, "--size", 64, "--seed", 7, "--ckpt-helper", helper, "--cpu"], demo_env,
               via_run_sh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = check_outputs(out, 64)
    assert record["started_server"] and record["server"].startswith("http://127.0.0.1:")
    assert record["models"] == {"base": "amdm_demo_content.safetensors", "helper": "my_style_model.safetensors"}
    assert record["seed"] == 7
    # progress from the websocket, per node, up to the planned member steps (not a TTY: quarter lines)
    assert f"Multi-Model Sampler: {record['summary']['total_evaluations']}/{record['summary']['total_evaluations']}" \
        in proc.stderr
    assert "Base model alone (same seed): " in proc.stderr
    # the server it started is gone again
    assert harness.ComfyClient(record["server"]).alive() is False
    assert (out / "comfyui.log").read_text().count("To see the GUI go to") == 1


def test_main_command_against_a_running_server(comfy_server, demo_env, tmp_path):
    """--server: API mode against an already running ComfyUI; --workflow in UI format."""
    out = tmp_path / "out"
    proc = run(["--server", comfy_server.base_url, "--output", out, "--steps", 5, "--size", 64,
                "--workflow", ah.UI_DIR / "amdm_sd15_two_models.json", "--quiet"], demo_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = check_outputs(out, 64)
    assert not record["started_server"] and record["server"] == comfy_server.base_url
    assert record["workflow"].endswith("workflows/ui/amdm_sd15_two_models.json")
    assert "Multi-Model Sampler:" not in proc.stderr            # --quiet
    assert comfy_server.alive()


def test_main_command_default_runs_the_digit_demo_set(demo_env, tmp_path):
    """`bash scripts/run.sh` with no model options: the trained digit set, every mode on one seed."""
    out = tmp_path / "out"
    proc = run(["--output", out, "--cpu"], demo_env, via_run_sh=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ("base_alone", "helper_alone", "amdm", "compose", "handoff")
    for f in [n + ".png" for n in names] + ["comparison.png", "summary.json", "summary.txt"]:
        assert (out / f).is_file(), f
    record = json.loads((out / "summary.json").read_text())
    assert record["mode"] == "digit_set" and record["started_server"]
    assert record["text"] == "a digit 3 at the top left"
    assert record["target"] == {"digit": "3", "position": "top left"}
    size = record["size"]
    pics = {n: Image.open(out / f"{n}.png").convert("RGB") for n in names}
    for n, im in pics.items():
        assert im.size == (size, size), n
        # digits on a clean background, not noise: one light colour covers most of the picture
        colours = sorted(im.getcolors(size * size), reverse=True)
        bg_count = sum(c for c, rgb in colours if min(rgb) > 200)
        assert bg_count / (size * size) > 0.6, (n, colours[:3])
        assert record["background_share"][n] > 0.6, n
        # ... and there is a stroke: some pixels are far from the background
        assert sum(c for c, rgb in colours if min(rgb) < 120) >= 20, n
    assert pics["amdm"].tobytes() != pics["base_alone"].tobytes(), "AMDM should change the base's picture"
    assert pics["helper_alone"].tobytes() != pics["base_alone"].tobytes()
    # evaluations: the stock samplers take one per step; AMDM's and the others' come from their summaries
    steps, ev = record["steps"], record["evaluations"]
    assert ev["base_alone"] == ev["helper_alone"] == steps
    assert ev["amdm"] == record["summaries"]["amdm"]["total_evaluations"] > steps
    assert ev["compose"] == 2 * steps and ev["handoff"] == steps
    # the judges read every picture
    for n in names:
        assert set(record["judges"][n]) == {"digit", "position", "colour"}
    assert record["judges"]["base_alone"]["position"]["value"] == "centre"
    comp = Image.open(out / "comparison.png")
    assert comp.width > 5 * size and comp.height > size
    assert (out / "summary.txt").read_text().startswith('prompt: "a digit 3 at the top left"')
    assert harness.ComfyClient(record["server"]).alive() is False


def test_digit_demo_needs_the_set_on_a_running_server(comfy_server, demo_env, tmp_path):
    proc = run(["--server", comfy_server.base_url, "--output", tmp_path / "out"], demo_env, timeout=60)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error")]
    assert line.startswith(f"error: the ComfyUI at {comfy_server.base_url} lacks the digit demo set")
    assert "python -m devtools.digit_set.install" in line


def test_unreachable_server_is_a_one_line_error(demo_env, tmp_path):
    port = harness.free_port()
    proc = run(["--server", f"http://127.0.0.1:{port}", "--output", tmp_path / "out"], demo_env, timeout=60)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach ComfyUI at http://127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--ckpt-base", "/nonexistent/base.safetensors"], "error: --ckpt-base checkpoint not found: /nonexistent/base.safetensors"),
    (["--workflow", "/nonexistent/flow.json"], "error: workflow file not found: /nonexistent/flow.json"),
])
def test_missing_file_is_a_one_line_error(demo_env, tmp_path, args, message):
    proc = run(args + ["--output", tmp_path / "out"], demo_env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [message]


def test_server_without_the_pack_or_models_is_refused(comfy_server, demo_env, tmp_path):
    proc = run(["--server", comfy_server.base_url, "--ckpt-base", "no_such_model.safetensors",
                "--output", tmp_path / "out"], demo_env, timeout=60)
    assert proc.returncode == 2
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error")]    # after one info line
    assert line.startswith(f"error: the ComfyUI at {comfy_server.base_url} has no checkpoint 'no_such_model.safetensors'")
