"""The digit demo set's workflow variants (issue 13, item 3), for real: `python -m
devtools.digit_set.install <base> --workflows` into a fresh ComfyUI base directory, a headless
ComfyUI started on it, every written API variant POSTed to /prompt (steps cut to STEPS so it stays
fast on two CPU cores), and its saved pictures must be digits: mostly white, with a stroke, not
noise. The UI variants are in the Workflows sidebar's folder (GET /userdata?dir=workflows) and
convert, with this server's schemas, to exactly their API twins. Without a server: the variants
derive from the shipped files (the UI and API variant of each workflow name the same files and
prompts), and the skipped workflows are the ones the set cannot run."""
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

import api_helpers as ah
import harness
from devtools.digit_set import data, workflows as W

STEPS = 8
EXPECTED = {"amdm_sd15_two_models", "amdm_sd15_guider_custom_sigmas", "amdm_sd15_img2img",
            "amdm_sd15_handoff_compose", "amdm_sd15_windowed_compose", "amdm_sd15_sweep",
            "amdm_sd15_model_guidance", "amdm_sd15_superposition"}
SKIPPED = {"amdm_flux_two_models": "Flux", "wan22_experts_handoff": "Wan",
           "amdm_sd15_three_members_gligen": "GLIGEN"}
LOADER_INPUTS = ("ckpt_name", "unet_name", "lora_name", "vae_name", "clip_name", "image")


# -- without a server ----------------------------------------------------------------------------

def _ui_values(ui: dict) -> dict:
    """{node id: widgets_values} of the UI file's real nodes."""
    return {str(n["id"]): list(n.get("widgets_values") or []) for n in ui["nodes"]
            if n["type"] not in ("MarkdownNote", "Note")}


def test_every_shipped_workflow_has_a_variant_or_a_reason():
    made, skipped = W.variants()
    assert set(made) | set(skipped) == set(W.shipped_names()) == EXPECTED | set(SKIPPED)
    assert set(made) == EXPECTED
    for name, word in SKIPPED.items():
        assert word in skipped[name], skipped[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_ui_and_api_variants_agree_on_files_and_prompts(name):
    made, _ = W.variants()
    ui, api = made[name]
    values = _ui_values(ui)
    assert set(values) == set(api)
    files, prompts = {}, {}
    for nid, node in api.items():
        for k, v in node["inputs"].items():
            if k in LOADER_INPUTS and isinstance(v, str):
                files[nid] = v
                assert v in W.installed_files(), (nid, k, v)
                assert v in values[nid], (nid, k, v, values[nid])      # the UI node names the same file
            if node["class_type"] == "CLIPTextEncode" and k == "text":
                prompts[nid] = v
                assert values[nid] == [v]
            if k in ("width", "height") and node["class_type"] in ("EmptyLatentImage", "ImageScale"):
                assert v == 64
            if k == "cfg":
                assert v in (W.CFG, 1.0)
    # the UI file names no other model file and holds no other prompt
    ui_strings = {v for vals in values.values() for v in vals if isinstance(v, str) and v.endswith((".safetensors", ".png"))}
    assert ui_strings == set(files.values())
    # roles: the base is the digit expert, the helper the position expert (the bare base model when it is
    # model guidance's weak model), negatives are empty, positives are digit prompts
    base_ckpt = api["1"]["inputs"]["ckpt_name"]
    assert base_ckpt == "amdm_digits_digit.safetensors"
    helper = "amdm_digits_base.safetensors" if name == "amdm_sd15_model_guidance" else "amdm_digits_position.safetensors"
    assert api["2"]["inputs"]["ckpt_name"] == helper
    assert sorted(prompts.values()) == ["", ""] + [W.GUIDANCE_PROMPT if "guidance" in name else W.DIGIT_PROMPT] * 2
    # the shipped file's other settings are untouched
    shipped = ah.load_api(name)
    for nid, node in api.items():
        for k, v in node["inputs"].items():
            if k not in ("ckpt_name", "text", "width", "height", "cfg", "image", "filename_prefix"):
                assert shipped[nid]["inputs"][k] == v, (nid, k)


def test_img2img_input_digit_is_the_held_out_sklearn_digit():
    ink, labels = data.load_digits()
    i = W.INPUT_DIGIT_INDEX
    assert labels[i] == 3 and i % 10 in data.SPLITS["judge_test"]
    assert (np.asarray(W.INPUT_DIGIT) == (ink[i] * 16).round().astype(int)).all()


# -- the installed set on a real server ----------------------------------------------------------

@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """install --workflows into a fresh base directory (the command itself), then a server on it."""
    base = tmp_path_factory.mktemp("digit_base")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "devtools.digit_set.install", str(base), "--workflows"],
                          cwd=ah.REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    record["install_s"] = time.monotonic() - t0
    record["stderr"] = proc.stderr
    server = harness.ComfyServer(base_dir=base, custom_nodes={harness.PACK_DIR_NAME: ah.REPO_ROOT},
                                 log_path=tmp_path_factory.mktemp("digit_log") / "server.log")
    try:
        client = server.start()
        yield client, record
    finally:
        server.cleanup()


def test_install_writes_the_variants_and_names_the_skipped(demo_server):
    client, record = demo_server
    assert set(record["workflows"]) == EXPECTED
    assert set(record["skipped"]) == set(SKIPPED)
    for name, reason in record["skipped"].items():
        assert f"skipped {name}: {reason}" in record["stderr"]
    assert set(record["checkpoints"]) == {"base", "digit", "position", "colour"}     # --workflows implies them
    # the frontend's Workflows sidebar lists the UI variants (its own request)
    listed = client.get_json("/userdata?" + urllib.parse.urlencode({"dir": "workflows", "recurse": "true"}))
    assert sorted(listed) == sorted(W.variant_file(n) for n in EXPECTED)
    # ... and serves them as written
    f = W.variant_file("amdm_sd15_two_models")
    body = client.get_json("/userdata/" + urllib.parse.quote("workflows/" + f, safe=""))
    assert body["nodes"] and body == json.loads(open(record["workflows"]["amdm_sd15_two_models"]["ui"]).read())


def _is_digit_picture(im) -> tuple:
    """(ok, facts): one white-ish colour covers most of the picture (the quantised background share of
    scripts/amdm_main/digit_demo.py > 0.6) and there is a stroke (some dark or saturated pixels)."""
    a = np.asarray(im.convert("RGB")).astype(int)
    q = a // 32
    keys = (q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).ravel()
    counts = np.bincount(keys, minlength=512)
    share = counts.max() / keys.size
    white = a.min(axis=-1) > 200
    ink = (a.min(axis=-1) < 120).sum()
    facts = {"background_share": round(float(share), 3), "white": round(float(white.mean()), 3), "ink_px": int(ink),
             "top_colour_is_white": bool(counts.argmax() >= 6 * 64 + 6 * 8 + 6)}
    return share > 0.6 and facts["top_colour_is_white"] and white.mean() > 0.6 and ink >= 20, facts


def test_every_api_variant_runs_and_draws_a_digit(demo_server):
    client, record = demo_server
    from amdm_main import workflow_format as wf
    info = client.object_info()
    times, facts = {}, {}
    for name in sorted(record["workflows"]):
        paths = record["workflows"][name]
        api = json.loads(open(paths["api"]).read())
        ui = json.loads(open(paths["ui"]).read())
        # the UI variant is the API variant (the frontend's conversion with this server's schemas)
        assert wf.ui_to_api(ui, info) == api, name
        assert wf.check_api_against_schemas(api, info) == [], name
        for node in api.values():
            if "steps" in node["inputs"]:
                node["inputs"]["steps"] = STEPS
        t0 = time.monotonic()
        result = client.run(api, timeout=120)
        times[name] = round(time.monotonic() - t0, 1)
        images = ah.saved_images(client, result, api)
        assert images and all(images.values()), name
        for sid, pics in images.items():
            for im, _ in pics:
                if name == "amdm_sd15_sweep":
                    assert im.width > 64 and im.height > 64      # the labelled grid
                else:
                    assert im.size == (64, 64), (name, im.size)
                ok, f = _is_digit_picture(im)
                facts[name] = f
                assert ok, (name, f)
        if os.environ.get("AMDM_DIGIT_WORKFLOWS_OUT"):          # to look at the pictures
            for sid, pics in images.items():
                for i, (im, raw) in enumerate(pics):
                    out = Path(os.environ["AMDM_DIGIT_WORKFLOWS_OUT"]) / f"{name}_{sid}_{i}.png"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(raw)
    sys.stderr.write(f"\ninstall {record['install_s']:.1f} s; runs (s): {times}\npictures: {facts}\n")
