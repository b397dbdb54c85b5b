"""Real browser, real frontend, real server, for each frontend and renderer of the matrix
(conftest.py): every shipped UI workflow is dropped onto the page (the drag-and-drop door), the
two-model workflow is queued with the Run button, the run summary appears on the Multi-Model
Sampler node (web/amdm.js), and a failing run clears it.

One Chromium session per frontend and renderer (tests/browser/drive.mjs) does everything and
reports JSON; the assertions are here. Strict in substance, tolerant in form: what differs between
frontends and renderers by design (node ids as numbers or strings, where the Run button sits, a
node's element or its box on the canvas, widgets_values left out of nodes without widgets) is
normalised; what the user sees and what reaches the server is compared exactly.

Screenshots go to output/browser/<host>-<frontend>-<renderer>/; with AMDM_UPDATE_DOCS=1 the pinned
frontend's classic run also refreshes docs/graph.png (the README's picture) and the template
thumbnails."""
import json
import math
import os
import shutil
import subprocess
import time

import pytest

import api_helpers as ah
import harness
from amdm_main import build_workflows, workflow_format as wf

HERE = ah.REPO_ROOT / "tests" / "browser"
SCREENSHOTS = ah.REPO_ROOT / "output" / "browser"
QUEUED = "amdm_sd15_two_models"
QUEUE_STEPS, QUEUE_SIZE = 8, 128      # the shipped 20 steps at 512 x 512 take minutes on a CPU
VIEWPORT = (1920, 1080)               # the window the shipped views are made for (workflow_format.VIEW_WINDOW)
STAR = "\u2605"
BASE_INPUT_NODES = ("AMDM_MultiModelSampler", "AMDM_MultiModelGuider", "AMDM_MultiModelSweep")
FAILED_PLACEHOLDER = "the last run failed or was interrupted: no summary"
RENDERER_SEED = {"classic": 1, "vue": 2}


def _ui_node(ui: dict, node_type: str, nth: int = 0) -> dict:
    return [n for n in ui["nodes"] if n["type"] == node_type][nth]


@pytest.fixture(scope="session")
def report(browser_tools, browser_server, renderer, tmp_path_factory):
    if renderer == "vue" and not browser_server.vue_nodes:
        pytest.skip(f"the {browser_server.frontend} frontend has no Nodes 2.0 renderer")
    config_id = f"{browser_server.frontend}-{renderer}"
    shots = SCREENSHOTS / f"{os.environ.get('AMDM_HOST_VERSION', 'host')}-{config_id}"
    shots.mkdir(parents=True, exist_ok=True)
    ui = ah.load_ui(QUEUED)
    sampler = _ui_node(ui, "AMDM_MultiModelSampler")["id"]
    save = _ui_node(ui, "SaveImage")["id"]
    latent = _ui_node(ui, "EmptyLatentImage")["id"]
    aggregate = _ui_node(ui, "AMDM_SphericalAggregate")["id"]
    window_end = ah.load_api(QUEUED)[str(aggregate)]["inputs"]["window_end"]
    browser_server.use_renderer(renderer)
    config = {
        "url": browser_server.base_url,
        "chromium": browser_tools["CHROMIUM"],
        "playwright": browser_tools["PLAYWRIGHT_CORE"],
        "userDataDir": str(tmp_path_factory.mktemp("chromium_profile")),
        "screenshotDir": str(shots),
        "timeoutMs": 60000,
        "viewport": list(VIEWPORT),
        "renderer": renderer,
        "workflows": [{"name": n, "path": str(ah.UI_DIR / f"{n}.json")} for n in ah.WORKFLOW_NAMES],
        "templates": {"module": harness.PACK_DIR_NAME, "titles": list(ah.workflow_specs.TEMPLATE_TITLES.values())},
        "queue": {"name": QUEUED, "samplerNode": str(sampler), "saveNode": str(save), "timeoutMs": 150000,
                  "screenshot": str(shots / "graph.png"),
                  # like a user editing widgets before pressing Run (another seed per renderer:
                  # the server would otherwise answer the second session from its cache)
                  "widgets": {str(latent): {"width": QUEUE_SIZE, "height": QUEUE_SIZE},
                              str(sampler): {"steps": QUEUE_STEPS, "seed": 1000 + RENDERER_SEED[renderer]}},
                  # then a run that fails: the aggregation window starts after it ends
                  "failWidgets": {str(aggregate): {"window_start": window_end + 2}}},
    }
    cfg = tmp_path_factory.mktemp("drive") / "config.json"
    cfg.write_text(json.dumps(config))
    t0 = time.monotonic()
    proc = subprocess.run([browser_tools["NODE"], str(HERE / "drive.mjs"), str(cfg)], capture_output=True, text=True,
                          timeout=300, cwd=HERE)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("AMDM_REPORT ")), None)
    assert line, f"no report from drive.mjs (rc {proc.returncode})\n{proc.stderr[-3000:]}\n" \
                 f"{browser_server.client.server.log_tail(40)}"
    rep = json.loads(line[len("AMDM_REPORT "):])
    rep["wall_s"] = time.monotonic() - t0
    rep["shots"] = shots
    (shots / "report.json").write_text(json.dumps(rep, indent=1, default=str))
    assert not rep.get("error"), f"{rep['error']}\n--- server log ---\n{browser_server.client.server.log_tail(60)}"
    if os.environ.get("AMDM_UPDATE_DOCS") == "1" and config_id == "pinned-classic":
        update_docs(shots)
    return rep


def update_docs(shots):
    """docs/graph.png (README) and the template thumbnails (example_workflows/<title>.jpg) from this run."""
    from PIL import Image

    (ah.REPO_ROOT / "docs").mkdir(exist_ok=True)
    shutil.copy(shots / "graph.png", ah.REPO_ROOT / "docs" / "graph.png")
    for name in ah.WORKFLOW_NAMES:
        img = Image.open(shots / f"{name}.png").convert("RGB")
        img.thumbnail((640, 400))
        img.save(build_workflows.template_path(name, ".jpg"), quality=85)


@pytest.fixture(scope="session")
def object_info(browser_server):
    return browser_server.client.object_info()


def _moved_by_frontend(info: dict, ui: dict) -> bool:
    """Frontend 1.32's Nodes 2.0 spreads a classic workflow by 1.2 when it opens it (its setting
    Comfy.VueNodes.AutoScaleLayout); later ones keep the saved positions."""
    saved = {str(n["id"]): n["pos"] for n in ui["nodes"]}
    return any(math.dist(n["pos"], saved[n["id"]]) > 1 for n in info["nodes"])


def test_extension_loads_once_without_errors(report):
    assert report["extensions"].count("amdm.RunSummary") == 1
    assert not [e for e in report["pageErrors"] if "amdm" in e.lower()]
    # (the frontend asks the public node registry about every node type it shows; this machine's
    # page policy blocks that, for core nodes and ours alike: not an error of the pack)
    assert not [c for c in report["console"] if "amdm" in c.lower() and "error" in c.lower()
                and "Content Security Policy" not in c]


def test_the_page_uses_the_renderer_asked_for(report, renderer):
    assert report["frontend"]["vueNodesSetting"] is (renderer == "vue")
    # Nodes 2.0 draws each node as an element of its own; the classic canvas draws none
    assert all(w["vue"] is (renderer == "vue") for w in report["workflows"].values())


@pytest.mark.parametrize("name", ah.WORKFLOW_NAMES)
def test_workflow_loads_without_missing_nodes(report, name):
    info = report["workflows"][name]
    ui = ah.load_ui(name)
    assert info["missing"] == [], f"missing node types reported by the frontend: {info['missing']}"
    assert info["dialogs"] == [], f"a dialog opened on load: {info['dialogs']}"
    # ids as the frontend gives them (numbers before about 1.40, strings since): compared as text
    assert sorted(n["id"] for n in info["nodes"]) == sorted(str(n["id"]) for n in ui["nodes"])
    assert all(n["registered"] and not n["hasErrors"] for n in info["nodes"])


def _number_fields(dom_inputs: list) -> list[float]:
    out = []
    for text in dom_inputs:
        try:
            out.append(float(text.replace(",", "")))
        except ValueError:
            pass
    return out


@pytest.mark.parametrize("name", ah.WORKFLOW_NAMES)
def test_our_nodes_render_with_their_widgets(report, object_info, name):
    info = report["workflows"][name]
    file_nodes = {str(n["id"]): n for n in ah.load_ui(name)["nodes"]}
    ours = [n for n in info["nodes"] if n["type"].startswith("AMDM_")]
    assert ours
    for n in ours:
        schema = object_info[n["type"]]
        expected = [wname if kind == "value" else "control_after_generate"
                    for wname, kind in wf.widget_layout(schema)]
        assert [w["name"] for w in n["widgets"] if w["serialize"]] == expected, n["type"]
        values = {w["name"]: w["value"] for w in n["widgets"]}
        file_values = wf.widget_values_by_name(file_nodes[n["id"]], schema)
        for k, v in file_values.items():
            assert values[k] == pytest.approx(v) if isinstance(v, float) else values[k] == v, (n["type"], k)
        if n["dom"] is not None:
            # Nodes 2.0: the node's element shows the same values, in the same order
            specs = {nm: sp for nm, sp, _ in wf.input_specs(schema)}
            numbers = [v for k, v in file_values.items() if wf.input_type(specs[k]) in ("INT", "FLOAT")]
            shown = _number_fields(n["dom"]["inputs"])
            assert shown == pytest.approx(numbers, abs=1e-3), (n["type"], n["dom"]["inputs"])
            for k, v in file_values.items():
                t = wf.input_type(specs[k])
                if t == "COMBO":
                    assert v in n["dom"]["labels"], (n["type"], k, v)
                elif t == "STRING":
                    assert v in n["dom"]["inputs"], (n["type"], k, v)
                # (a BOOLEAN is a toggle switch: its state is no text; its value is checked above)
        if n["type"] in BASE_INPUT_NODES:
            model_input = next(i for i in n["inputs"] if i["name"] == "model")
            # the base model input carries the star in both renderers: in the label the canvas
            # draws, and (Nodes 2.0) in the slot's text on the node's element
            assert model_input["shown"] == f"{STAR} base model" and model_input["link"] is not None
            if n["dom"] is not None:
                assert f"{STAR} base model" in n["dom"]["labels"]
            # ...but never in the saved workflow
            saved = next(i for i in info["serializedNodes"][n["id"]]["inputs"] if i["name"] == "model")
            assert STAR not in json.dumps(saved, ensure_ascii=False)


@pytest.mark.parametrize("name", ah.WORKFLOW_NAMES)
def test_frontend_serialises_the_workflow_like_its_api_twin(report, name):
    """The frontend's own graphToPrompt of the loaded file is the shipped API twin, and saving the
    loaded graph gives back the file's widget values (count and order as the frontend sees them)."""
    info = report["workflows"][name]
    assert info["prompt"] == ah.load_api(name)
    for node in ah.load_ui(name)["nodes"]:
        saved = info["serializedNodes"][str(node["id"])]["widgets_values"]
        # (frontends since about 1.40 leave widgets_values out of a node that has no widgets)
        assert (saved if saved is not None else []) == node["widgets_values"], (name, node["id"], node["type"])


def _boxes(info):
    return [(n["id"], n["rect"]["x"], n["rect"]["y"], n["rect"]["x"] + n["rect"]["w"], n["rect"]["y"] + n["rect"]["h"])
            for n in info["nodes"]]


@pytest.mark.parametrize("name", ah.WORKFLOW_NAMES)
def test_layout_has_no_overlapping_nodes(report, name):
    """As drawn: the node's element (Nodes 2.0, taller than the canvas's boxes) or its box on
    the canvas, titles included."""
    boxes = _boxes(report["workflows"][name])
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = min(a[3], b[3]) - max(a[1], b[1]) > 1 and min(a[4], b[4]) - max(a[2], b[2]) > 1
            assert not overlap, f"{name}: nodes {a[0]} and {b[0]} overlap"


@pytest.mark.parametrize("name", ah.WORKFLOW_NAMES)
def test_workflow_opens_with_every_node_in_view(report, name):
    """The saved view shows the whole graph in a full-HD window: no node is outside the window or
    under the frontend's sidebar, tabs, toolbars or zoom controls."""
    info = report["workflows"][name]
    ui = ah.load_ui(name)
    covered = [(n["id"], n["type"], c) for n in info["nodes"] for c in n["corners"] if not c["ok"]]
    if not _moved_by_frontend(info, ui):
        assert info["view"]["scale"] == pytest.approx(ui["extra"]["ds"]["scale"])
        assert info["view"]["offset"] == pytest.approx(ui["extra"]["ds"]["offset"], abs=0.5)
        assert covered == [], f"{name}: node corners hidden: {covered[:6]}"
    else:
        # the frontend moved the nodes apart (1.32, Nodes 2.0: 1.2 times the saved layout at the
        # saved scale): the graph may then reach past the window's right and bottom edges, but
        # nothing is cut at the top or the left and nothing is hidden under the frontend's panels
        assert [c for c in covered if c[2]["what"] != "outside the window"] == [], covered[:6]
        assert all(c[2]["x"] >= VIEWPORT[0] or c[2]["y"] >= VIEWPORT[1] for c in covered), covered[:6]


def test_queued_workflow_shows_the_run_summary(report, browser_server):
    q = report["queue"]
    assert q["runButton"], "the Run button was not found"
    assert q["dialogs"] == []
    # the box is on the node from the start, empty until the run (it used to appear with the first
    # summary; frontend 1.32's Nodes 2.0 shows only the widgets a node has when it is added)
    assert (q["before"]["boxes"], q["before"]["value"], q["before"]["placeholder"]) == (1, "", "run summary")
    text = q["summary"]
    lines = text.splitlines()
    ui = ah.load_ui(QUEUED)
    helper_title = _ui_node(ui, "AMDM_Member")["title"]
    assert lines[0] == f"AMDM window: steps 1-3 of {QUEUE_STEPS}"
    assert lines[1].startswith("  sigma ") and lines[1].endswith(", spherical")
    # members are named as the canvas shows them: the starred base model input, the helper's title
    assert lines[2] == f"{STAR} base model: {QUEUE_STEPS} evaluations"
    assert lines[4] == f"  {helper_title}: 4 evaluations"
    assert lines[-1].startswith(f"total {QUEUE_STEPS + 4} evaluations in ")
    # on the node: inside the node's element (Nodes 2.0), inside its box on the canvas (classic)
    after = q["after"]
    assert after["boxes"] == 1 and after["inNodeRect"] and after["visible"]
    assert after["inNodeElement"] is (True if report["renderer"] == "vue" else None)
    # display only: the box is in neither the saved workflow nor the API prompt...
    assert q["widget"] == {"serialize": False, "toPrompt": False, "type": "amdm_summary"}
    assert len(q["samplerWidgetsValues"]) == len(_ui_node(ui, "AMDM_MultiModelSampler")["widgets_values"])
    # ...and what it shows is exactly what an API client reads from /history for this run
    status, raw = browser_server.client.request("GET", f"/history/{q['promptId']}")
    sampler_id = str(_ui_node(ui, "AMDM_MultiModelSampler")["id"])
    s = json.loads(json.loads(raw)[q["promptId"]]["outputs"][sampler_id]["amdm_summary"][0])
    assert lines[-1] == f"total {s['total_evaluations']} evaluations in {s['seconds']:.2f} s"
    assert lines[1] == f"  sigma {round(s['window_sigmas'][0], 4):g} -> {round(s['window_sigmas'][1], 4):g}, spherical"
    assert [m["evaluations"] for m in s["members"]] == [QUEUE_STEPS, 4]
    # the saved image came back to the page
    (img,) = q["saveImages"]
    assert (img["w"], img["h"]) == (QUEUE_SIZE, QUEUE_SIZE) and "/view?" in img["src"]
    assert (report["shots"] / "graph.png").stat().st_size > 20000


def test_failed_run_clears_the_old_summary(report):
    """After a run that fails (here in Spherical Aggregate, before the sampler runs), the sampler's
    box no longer shows the summary of the run before."""
    f = report["queue"]["failed"]
    assert f["runButton"], "the Run button was not found"
    errors = [e for e in f["events"] if e["type"] == "execution_error"]
    assert errors and errors[0]["node_type"] == "AMDM_SphericalAggregate" and "window_start" in errors[0]["message"]
    assert (f["boxes"], f["value"], f["placeholder"]) == (1, "", FAILED_PLACEHOLDER)
    assert f["inNodeRect"]


def test_templates_browser_shows_the_titles(report):
    """ComfyUI's templates browser, on this pack's category: each shipped template under its
    title (the frontends take a custom node pack's template titles from the file names)."""
    t = report["templates"]
    assert t["opened"] is True and t["dialogs"]
    assert sorted(t["titles"]) == sorted(ah.workflow_specs.TEMPLATE_TITLES.values())


def test_browser_run_is_time_boxed(report):
    assert report["wall_s"] < 150, report["timings"]
