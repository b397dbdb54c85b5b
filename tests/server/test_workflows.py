"""The shipped workflows against the real server's schemas: every node type exists in /object_info,
widget values match the schemas (count, order, type, range, options), links join matching types,
each UI workflow and its API twin agree, the files match their source (workflow_specs.py), and
ComfyUI serves them as the pack's templates."""
import json

import pytest

import api_helpers as ah
from amdm_main import build_workflows, workflow_format as wf
from devtools import flow_models
from devtools.host import HOST_ORDER, comfyui_path

NAMES = ah.WORKFLOW_NAMES
# The files are generated from the newest host's schemas (build_workflows.py against it); an older host
# lacks what was added since (e.g. SaveImage's IMAGE output, 0.33), which its frontend ignores.
GENERATED_ON = HOST_ORDER[0]


def host_version() -> str:
    text = (comfyui_path() / "comfyui_version.py").read_text()
    return text.split("=", 1)[1].strip().strip("\"'")


NEWEST = host_version() == GENERATED_ON


@pytest.fixture(scope="module")
def object_info(comfy_server, tiny_model_set):
    ah.ensure_demo_models(tiny_model_set)   # so the model combos list the demo files
    flow_models.make_flow_models(tiny_model_set.models_dir)
    ah.upload_input_image(comfy_server)
    return comfy_server.object_info()


def test_files_exist_and_templates_are_the_ui_files():
    assert len(NAMES) == 11
    titles = ah.workflow_specs.TEMPLATE_TITLES
    assert sorted(titles) == sorted(NAMES) and len(set(titles.values())) == len(NAMES)
    for name in NAMES:
        ui_path, api_path = ah.UI_DIR / f"{name}.json", ah.API_DIR / f"{name}.json"
        tpl_path, thumb_path = build_workflows.template_path(name), build_workflows.template_path(name, ".jpg")
        assert ui_path.is_file() and api_path.is_file() and tpl_path.is_file() and thumb_path.is_file(), name
        assert tpl_path.read_bytes() == ui_path.read_bytes(), f"{tpl_path.name} differs from workflows/ui/{name}.json"
        assert wf.is_ui_format(json.loads(ui_path.read_text())) and wf.is_api_format(json.loads(api_path.read_text()))
        # the templates browser shows the file name as the title, and again (with "-" and "_" as
        # spaces) as the description: a title short enough for a card, with nothing a file system
        # or a URL path refuses
        assert not set(titles[name]) & set('-_/\\:*?"<>|#%&') and len(titles[name]) <= 30, titles[name]
    # nothing else in the three folders (a stale file would be offered to users)
    for d, stems in ((ah.UI_DIR, NAMES), (ah.API_DIR, NAMES), (ah.TEMPLATE_DIR, list(titles.values()))):
        assert sorted(p.stem for p in d.glob("*.json")) == sorted(stems), d
    assert sorted(p.stem for p in ah.TEMPLATE_DIR.glob("*.jpg")) == sorted(titles.values())


@pytest.mark.parametrize("name", NAMES)
def test_node_types_exist_in_the_server(object_info, name):
    ui, api = ah.load_ui(name), ah.load_api(name)
    for node in ui["nodes"]:
        if node["type"] in wf.VIRTUAL_NODE_TYPES:
            assert node["type"] == "MarkdownNote"      # frontend-only note; the browser test loads it
            continue
        assert node["type"] in object_info, f"{name}: node {node['id']} type {node['type']} not in /object_info"
        module = object_info[node["type"]]["python_module"]
        assert module in ("nodes", "custom_nodes.amdm_pack") or module.startswith("comfy_extras."), \
            f"{name}: {node['type']} comes from {module}; only core nodes and this pack are allowed"
    assert {n["class_type"] for n in api.values()} <= set(object_info)
    assert any(t.startswith("AMDM_") for t in (n["class_type"] for n in api.values()))


@pytest.mark.parametrize("name", NAMES)
def test_widget_values_match_the_schemas(object_info, name):
    ui = ah.load_ui(name)
    links = {link[0]: link for link in ui["links"]}
    for node in ui["nodes"]:
        if node["type"] in wf.VIRTUAL_NODE_TYPES:
            assert len(node["widgets_values"]) == 1 and isinstance(node["widgets_values"][0], str)
            continue
        schema = object_info[node["type"]]
        layout = wf.widget_layout(schema)
        where = f"{name}: node {node['id']} ({node['type']})"
        assert len(node["widgets_values"]) == len(layout), f"{where}: widget count"
        for (wname, kind), value in zip(layout, node["widgets_values"]):
            if kind == "control":
                assert value == "fixed", f"{where}: {wname} must not change after each run (reproducible)"
            elif kind == "upload":
                assert value == "image"
            else:
                spec = next(sp for n, sp, _ in wf.input_specs(schema) if n == wname)
                if wf.input_type(spec) == "COMBO" and value in ah.workflow_specs.PLACEHOLDERS:
                    continue   # a placeholder file name (checked after substitution below)
                assert wf._check_value(spec, value) == [], f"{where}: {wname} = {value!r}"
        # socket inputs: the schema's, in its order, with the right types; links land where they say
        sockets = wf.socket_inputs(schema)
        assert [(s["name"], s["type"]) for s in node["inputs"]] == [(n, t) for n, t, _ in sockets], where
        for slot_index, slot in enumerate(node["inputs"]):
            if slot["link"] is not None:
                _, origin, origin_slot, target, target_slot, ltype = links[slot["link"]]
                assert (target, target_slot) == (node["id"], slot_index) and ltype == slot["type"], where
        saved = [o["type"] for o in node["outputs"]]
        if NEWEST:
            assert saved == schema["output"], where
        else:       # form changed for older hosts: outputs added since are extra, unlinked slots
            assert saved[:len(schema["output"])] == schema["output"], where
            assert all(not o.get("links") for o in node["outputs"][len(schema["output"]):]), where


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_and_api_twin_agree(object_info, name):
    ui, api = ah.load_ui(name), ah.load_api(name)
    assert wf.ui_to_api(ui, object_info) == api
    # the API twin is valid for the server once the placeholders name real files
    g = wf.substitute(api, _demo_names())
    errors = wf.check_api_against_schemas(g, object_info)
    # T5-XXL / umT5-XXL cannot be generated small (test_flow_workflows.py): their file names stay
    # placeholders, the one thing allowed to be missing from the server's lists
    assert [e for e in errors if not any(repr(t) in e for t in TEXT_ENCODERS)] == []


TEXT_ENCODERS = (ah.workflow_specs.FLUX_CLIP_L, ah.workflow_specs.FLUX_T5, ah.workflow_specs.WAN_T5)


def _demo_names():
    from amdm_main import workflow_specs as ws
    from devtools import demo_models, flow_models as fm
    return {ws.CONTENT_CKPT: demo_models.CONTENT_CKPT, ws.STYLE_CKPT: demo_models.STYLE_CKPT,
            ws.WEAK_CKPT: demo_models.STYLE_CKPT, ws.GLIGEN_MODEL: demo_models.GLIGEN_FILE,
            ws.INPUT_IMAGE: ah.COMFY_EXAMPLE_IMAGE_NAME, ws.FLUX_A: fm.FLUX_FILE, ws.FLUX_B: fm.FLUX_FILE,
            ws.FLUX_VAE: fm.VAE_FILES["taesd16"], ws.WAN_HIGH: fm.WAN_FILES["wan_high"],
            ws.WAN_LOW: fm.WAN_FILES["wan_low"], ws.WAN_VAE: fm.VAE_FILES["wan_vae"]}


def test_files_are_built_from_the_specs(object_info):
    """workflows/ is generated (scripts/amdm_main/build_workflows.py); a hand edit of one file
    without the others, or a schema change in the pack, shows up here."""
    for name, (ui, api) in build_workflows.build_all(object_info).items():
        assert ah.load_api(name) == api, name
        if NEWEST:
            assert ah.load_ui(name) == ui, f"{name}: regenerate with scripts/amdm_main/build_workflows.py"
        else:       # an older host's schemas give other output slots, and so other sizes and views;
            # everything else must agree: nodes, titles, input names, links, widget values by position
            assert _substance(ah.load_ui(name)) == _substance(ui), name


def _substance(ui: dict) -> dict:
    """A UI workflow without what follows from the output slots of the host's schemas."""
    nodes = [{k: v for k, v in n.items() if k not in ("outputs", "size", "pos")} for n in ui["nodes"]]
    extra = {k: v for k, v in ui["extra"].items() if k != "ds"}
    return {**ui, "nodes": nodes, "extra": extra}


def test_paper_settings_in_the_two_model_workflow():
    api = ah.load_api("amdm_sd15_two_models")
    (sampler,) = [n["inputs"] for n in api.values() if n["class_type"] == "AMDM_MultiModelSampler"]
    (member,) = [n["inputs"] for n in api.values() if n["class_type"] == "AMDM_Member"]
    (agg,) = [n["inputs"] for n in api.values() if n["class_type"] == "AMDM_SphericalAggregate"]
    (dev,) = [n["inputs"] for n in api.values() if n["class_type"] == "AMDM_DeviationOptimize"]
    assert (sampler["base_weight"], member["weight"]) == (0.5, 0.866)
    assert (sampler["steps"], sampler["cfg"], member["cfg"]) == (20, 7.5, 7.5)
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("euler", "ddim_uniform")
    assert (agg["mode"], agg["window_unit"], agg["window_start"], agg["window_end"]) == ("spherical", "steps", 1, 3)
    assert dev["step"] == pytest.approx(45 / 128, abs=1e-4) and dev["target"] == "faithful" and dev["members"] == "base"
    # aggregation and deviation are connected, not left to the defaults
    assert isinstance(sampler["aggregation"], list) and isinstance(sampler["deviation"], list)
    ckpts = sorted(n["inputs"]["ckpt_name"] for n in api.values() if n["class_type"] == "CheckpointLoaderSimple")
    assert ckpts == ["content_model_sd15.safetensors", "style_model_sd15.safetensors"]


def test_gligen_workflow_uses_stock_layout_nodes():
    api = ah.load_api("amdm_sd15_three_members_gligen")
    members = [k for k, n in api.items() if n["class_type"] == "AMDM_Member"]
    assert len(members) == 2      # + the base = three members
    boxes = [n for n in api.values() if n["class_type"] == "GLIGENTextBoxApply"]
    assert len(boxes) == 2 and any(n["class_type"] == "GLIGENLoader" for n in api.values())
    # one member's positive conditioning comes out of the GLIGEN boxes
    box_ids = {k for k, n in api.items() if n["class_type"] == "GLIGENTextBoxApply"}
    assert sum(api[m]["inputs"]["positive"][0] in box_ids for m in members) == 1


def test_templates_are_served_by_comfyui(comfy_server):
    import urllib.parse

    titles = ah.workflow_specs.TEMPLATE_TITLES
    status, raw = comfy_server.request("GET", "/workflow_templates")
    assert status == 200
    listed = json.loads(raw)
    # each once, by its title (API twins are not templates)
    assert sorted(listed["amdm_pack"]) == sorted(titles.values())
    for name in NAMES:
        # the URLs the frontend asks for: the template and its thumbnail
        base = f"/api/workflow_templates/amdm_pack/{urllib.parse.quote(titles[name])}"
        status, raw = comfy_server.request("GET", base + ".json")
        assert status == 200 and json.loads(raw) == ah.load_ui(name)
        status, raw = comfy_server.request("GET", base + ".jpg")
        assert status == 200 and raw[:3] == b"\xff\xd8\xff"


def test_saved_views_show_the_whole_graph():
    """extra.ds of each UI file: the graph (titles included) inside a full-HD window less the
    frontend's panels, at a scale where the classic canvas still draws widget text (the browser
    test checks it in the real frontends and both renderers)."""
    m, (w, h) = wf.VIEW_MARGIN, wf.VIEW_WINDOW
    for name in NAMES:
        ui = ah.load_ui(name)
        ds = ui["extra"]["ds"]
        assert wf.VIEW_SCALE[0] <= ds["scale"] <= wf.VIEW_SCALE[1], name
        for n in ui["nodes"]:
            x0 = (n["pos"][0] + ds["offset"][0]) * ds["scale"]
            y0 = (n["pos"][1] - wf.TITLE + ds["offset"][1]) * ds["scale"]
            x1 = (n["pos"][0] + n["size"][0] + ds["offset"][0]) * ds["scale"]
            y1 = (n["pos"][1] + n["size"][1] + ds["offset"][1]) * ds["scale"]
            assert x0 >= m["left"] - 1 and y0 >= m["top"] - 1, (name, n["id"])
            assert x1 <= w - m["right"] + 1 and y1 <= h - m["bottom"] + 1, (name, n["id"])
