"""Real-browser layer: Debian's Chromium driven by playwright-core (tests/browser/drive.mjs)
against a real ComfyUI server with the real frontend package (comfyui-frontend-package 1.32.9)
and only this pack installed.

The server gets the demo models under the shipped workflows' placeholder file names, so every
shipped UI workflow is valid as it is; tools come from tests/browser/setup_browser.sh (apt-get
chromium, npm playwright-core). Without them the tests fail under CI (CI=true) and are skipped
elsewhere."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for p in (str(REPO_ROOT / "tests" / "server"),):
    if p not in sys.path:
        sys.path.append(p)

import api_helpers as ah  # noqa: E402
import harness  # noqa: E402


@pytest.fixture(scope="session")
def browser_tools():
    proc = subprocess.run(["bash", str(HERE / "setup_browser.sh")], capture_output=True, text=True, timeout=900)
    tools = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    if proc.returncode != 0 or not {"CHROMIUM", "NODE", "PLAYWRIGHT_CORE"} <= set(tools):
        msg = f"browser tools unavailable (tests/browser/setup_browser.sh): {proc.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return tools


def _post_setting(base_url, key, value):
    req = urllib.request.Request(f"{base_url}/settings/{key}", data=json.dumps(value).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture(scope="session")
def browser_server(tiny_model_set, tmp_path_factory):
    """A ComfyUI with only this pack, the demo models under the workflows' placeholder names and
    ComfyUI's example.png as input; first-visit dialogs (templates browser, minimap) turned off
    through the settings API, as a returning user has them."""
    ah.ensure_demo_models(tiny_model_set)
    demo = ah.demo_models.paths(tiny_model_set.base_dir)
    spec = ah.workflow_specs
    models = tmp_path_factory.mktemp("browser_models")
    for folder, name, target in (("checkpoints", spec.CONTENT_CKPT, demo["content"]),
                                 ("checkpoints", spec.STYLE_CKPT, demo["style"]),
                                 ("gligen", spec.GLIGEN_MODEL, demo["gligen"])):
        (models / folder).mkdir(exist_ok=True)
        (models / folder / name).symlink_to(target)
    base = tmp_path_factory.mktemp("browser_base")
    (base / "input").mkdir()
    shutil.copy(harness.default_comfyui_path() / "input" / "example.png", base / "input" / spec.INPUT_IMAGE)
    server = harness.ComfyServer(base_dir=base, models_dir=models,
                                 log_path=tmp_path_factory.mktemp("browser_log") / "server.log",
                                 custom_nodes={harness.PACK_DIR_NAME: REPO_ROOT})
    try:
        client = server.start()
        if server.frontend != "comfyui-frontend-package":
            pytest.fail("the real frontend package is not installed (the server fell back to a stub)")
        _post_setting(client.base_url, "Comfy.TutorialCompleted", True)
        _post_setting(client.base_url, "Comfy.Minimap.Visible", False)
        _post_setting(client.base_url, "Comfy.Graph.CanvasInfo", False)   # no FPS overlay in screenshots
        yield client
    finally:
        server.cleanup()
