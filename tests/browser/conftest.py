"""Real-browser layer: Debian's Chromium driven by playwright-core (tests/browser/drive.mjs)
against a real ComfyUI server with a real frontend and only this pack installed.

The matrix, per host (scripts/test.sh, AMDM_HOST=...):
  frontends  "pinned": the comfyui-frontend-package the host's requirements.txt pins (1.32.9 on
             ComfyUI 0.3.75, 1.49.6 on 0.33.0); "newest": the newest frontend package, served with
             --front-end-root $AMDM_NEWEST_FRONTEND_ROOT where that is set (the newest host);
  renderers  "classic" (the LiteGraph canvas) and "vue" (Nodes 2.0), each chosen through the
             frontend's setting Comfy.VueNodes.Enabled, on every frontend that has the setting.
One server per frontend, one browser session per frontend and renderer.

The server gets the demo models under the shipped workflows' placeholder file names, so every
shipped UI workflow is valid as it is; tools come from tests/browser/setup_browser.sh (apt-get
chromium, npm playwright-core). Without them the tests fail under CI (CI=true) and are skipped
elsewhere."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for p in (str(REPO_ROOT / "tests" / "server"),):
    if p not in sys.path:
        sys.path.append(p)

import api_helpers as ah  # noqa: E402
import harness  # noqa: E402
from devtools import flow_models  # noqa: E402

VUE_NODES_SETTING = "Comfy.VueNodes.Enabled"
RENDERERS = ("classic", "vue")


def newest_frontend_root() -> Path | None:
    root = os.environ.get("AMDM_NEWEST_FRONTEND_ROOT", "").strip()
    return Path(root) if root else None


FRONTENDS = ("pinned", "newest") if newest_frontend_root() else ("pinned",)


def pinned_frontend_root() -> Path | None:
    """The static folder of the host's own comfyui-frontend-package (this Python is the host's)."""
    spec = importlib.util.find_spec("comfyui_frontend_package")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def has_vue_nodes(static_root: Path | None) -> bool:
    """Whether a frontend has the Nodes 2.0 renderer: its bundle defines the setting."""
    if static_root is None:
        return False
    needle = VUE_NODES_SETTING.encode()
    return any(needle in p.read_bytes() for p in (static_root / "assets").glob("*.js"))


@dataclass
class BrowserServer:
    client: object              # devtools' ComfyClient of the running server
    frontend: str               # "pinned" | "newest"
    static_root: Path | None    # the frontend's static folder
    vue_nodes: bool             # the frontend has the Nodes 2.0 renderer

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def use_renderer(self, renderer: str) -> None:
        """The renderer is a user setting, read when the page opens."""
        post_setting(self.base_url, VUE_NODES_SETTING, renderer == "vue")


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


def post_setting(base_url, key, value):
    req = urllib.request.Request(f"{base_url}/settings/{key}", data=json.dumps(value).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture(scope="session")
def browser_models(tiny_model_set, tmp_path_factory):
    """The demo models under the workflows' placeholder names (shared by the servers)."""
    ah.ensure_demo_models(tiny_model_set)
    demo = ah.demo_models.paths(tiny_model_set.base_dir)
    spec = ah.workflow_specs
    models = tmp_path_factory.mktemp("browser_models")
    flow = flow_models.make_flow_models(tiny_model_set.models_dir)
    vae = {k: tiny_model_set.models_dir / "vae" / f for k, f in flow_models.VAE_FILES.items()}
    links = [("checkpoints", spec.CONTENT_CKPT, demo["content"]), ("checkpoints", spec.STYLE_CKPT, demo["style"]),
             ("checkpoints", spec.WEAK_CKPT, demo["style"]), ("gligen", spec.GLIGEN_MODEL, demo["gligen"]),
             ("diffusion_models", spec.FLUX_A, flow["flux"]), ("diffusion_models", spec.FLUX_B, flow["flux"]),
             ("diffusion_models", spec.WAN_HIGH, flow["wan_high"]), ("diffusion_models", spec.WAN_LOW, flow["wan_low"]),
             ("vae", spec.FLUX_VAE, vae["taesd16"]), ("vae", spec.WAN_VAE, vae["wan_vae"])]
    # T5-XXL / umT5-XXL cannot be small: the names only have to be listed (the browser tests never
    # run these workflows, they load them), so any file stands in
    links += [("text_encoders", name, demo["content"]) for name in (spec.FLUX_CLIP_L, spec.FLUX_T5, spec.WAN_T5)]
    for folder, name, target in links:
        (models / folder).mkdir(exist_ok=True)
        (models / folder / name).symlink_to(target)
    return models


@pytest.fixture(scope="session", params=FRONTENDS)
def browser_server(request, browser_models, tmp_path_factory):
    """A ComfyUI with only this pack, the demo models under the workflows' placeholder names and
    ComfyUI's example.png as input, serving the frontend of this matrix entry; first-visit dialogs
    (templates browser, minimap) turned off through the settings API, as a returning user has them."""
    frontend = request.param
    root = newest_frontend_root() if frontend == "newest" else None
    base = tmp_path_factory.mktemp(f"browser_base_{frontend}")
    (base / "input").mkdir()
    shutil.copy(harness.default_comfyui_path() / "input" / "example.png", base / "input" / ah.workflow_specs.INPUT_IMAGE)
    server = harness.ComfyServer(base_dir=base, models_dir=browser_models,
                                 log_path=tmp_path_factory.mktemp(f"browser_log_{frontend}") / "server.log",
                                 custom_nodes={harness.PACK_DIR_NAME: REPO_ROOT}, front_end_root=root)
    try:
        client = server.start()
        if server.frontend == "stub":
            pytest.fail("the real frontend package is not installed (the server fell back to a stub)")
        post_setting(client.base_url, "Comfy.TutorialCompleted", True)
        post_setting(client.base_url, "Comfy.Minimap.Visible", False)
        post_setting(client.base_url, "Comfy.Graph.CanvasInfo", False)   # no FPS overlay in screenshots
        static_root = root or pinned_frontend_root()
        yield BrowserServer(client=client, frontend=frontend, static_root=static_root,
                            vue_nodes=has_vue_nodes(static_root))
    finally:
        server.cleanup()


@pytest.fixture(scope="session", params=RENDERERS)
def renderer(request):
    return request.param
