"""ComfyUI workflow formats: the UI format (what the frontend saves and loads by drag-and-drop,
litegraph "version 0.4") and the API format (what POST /prompt takes), and the conversion
between them using the server's /object_info schemas.

Widget values in the UI format are positional: one entry per widget input in the schema's
input_order (required, then optional), plus one extra entry after an INT with
control_after_generate (the "control after generate" combo: fixed/increment/randomize) and after
a COMBO with image_upload (the upload button's value, "image"). Neither extra entry reaches the
API format (the frontend marks both serialize=false).
"""
from __future__ import annotations

import copy
import json
import math
import uuid
from pathlib import Path

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
# frontend-only nodes: exist in LiteGraph, not in /object_info, never in the API format
VIRTUAL_NODE_TYPES = ("Note", "MarkdownNote", "Reroute", "PrimitiveNode")
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


class WorkflowFormatError(ValueError):
    pass


def is_api_format(data) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(v, dict) and "class_type" in v for v in data.values())


def is_ui_format(data) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def load_workflow(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"workflow file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise WorkflowFormatError(f"{path} is not valid JSON: {e}") from None
    if not (is_api_format(data) or is_ui_format(data)):
        raise WorkflowFormatError(f"{path} is neither a ComfyUI UI workflow (nodes + links) nor an API-format "
                                  f"prompt (node id -> class_type + inputs)")
    return data


def input_specs(schema: dict) -> list[tuple[str, list, bool]]:
    """(name, spec, optional) in the order the frontend creates inputs and widgets."""
    order = schema.get("input_order") or {k: list(v) for k, v in schema["input"].items()}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            out.append((name, schema["input"][section][name], section == "optional"))
    return out


def input_type(spec) -> str:
    return "COMBO" if isinstance(spec[0], list) else spec[0]


def spec_options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def is_widget(spec) -> bool:
    return input_type(spec) in WIDGET_TYPES and not spec_options(spec).get("forceInput")


def combo_options(spec) -> list:
    return spec[0] if isinstance(spec[0], list) else list(spec_options(spec).get("options", []))


def widget_layout(schema: dict) -> list[tuple[str, str]]:
    """[(name, kind)] for each widgets_values position; kind: 'value', 'control', 'upload'."""
    out = []
    for name, spec, _ in input_specs(schema):
        if not is_widget(spec):
            continue
        out.append((name, "value"))
        opts = spec_options(spec)
        if input_type(spec) == "INT" and opts.get("control_after_generate"):
            out.append((name, "control"))
        if input_type(spec) == "COMBO" and opts.get("image_upload"):
            out.append((name, "upload"))
    return out


def socket_inputs(schema: dict) -> list[tuple[str, str, bool]]:
    return [(name, input_type(spec), opt) for name, spec, opt in input_specs(schema) if not is_widget(spec)]


def widget_values_by_name(node: dict, schema: dict) -> dict:
    """{input name: value} from a UI node's positional widgets_values (extras dropped)."""
    layout = widget_layout(schema)
    values = list(node.get("widgets_values") or [])
    if isinstance(node.get("widgets_values"), dict):   # some nodes save a dict; ours never do
        return dict(node["widgets_values"])
    optional = {name for name, _, opt in input_specs(schema) if opt}
    if len(values) < len(layout) and all(name in optional for name, _ in layout[len(values):]):
        # saved before optional inputs were appended (the pack only ever appends optional inputs):
        # the missing trailing widgets take their defaults, as the frontend does when it loads the file
        layout = layout[:len(values)]
    if len(values) != len(layout):
        raise WorkflowFormatError(
            f"node {node.get('id')} ({node.get('type')}): {len(values)} widget values, the schema has "
            f"{len(layout)} widget slots {[n + ('' if k == 'value' else ':' + k) for n, k in layout]}")
    return {name: v for (name, kind), v in zip(layout, values) if kind == "value"}


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """API-format prompt of a UI workflow, as the frontend's graphToPrompt builds it (no groups,
    subgraphs or reroutes: the pack's workflows use none). Muted/bypassed and virtual nodes are
    dropped; links to them are dropped too."""
    links = {link[0]: link for link in ui.get("links", [])}
    nodes = {n["id"]: n for n in ui["nodes"]}
    kept = {nid for nid, n in nodes.items()
            if n["type"] not in VIRTUAL_NODE_TYPES and n.get("mode", 0) not in (MODE_NEVER, MODE_BYPASS)}
    api = {}
    for nid, n in nodes.items():
        if nid not in kept:
            continue
        schema = object_info.get(n["type"])
        if schema is None:
            raise WorkflowFormatError(f"node {nid}: unknown node type {n['type']!r} (not in /object_info)")
        inputs = widget_values_by_name(n, schema)
        for slot in n.get("inputs") or []:
            if slot.get("link") is None:
                continue
            _, origin, origin_slot, _, _, _ = links[slot["link"]]
            if origin in kept:
                inputs[slot["name"]] = [str(origin), origin_slot]
            else:
                inputs.pop(slot["name"], None)
        api[str(nid)] = {"inputs": inputs, "class_type": n["type"],
                         "_meta": {"title": n.get("title") or schema.get("display_name") or n["type"]}}
    return api


def check_api_against_schemas(api: dict, object_info: dict) -> list[str]:
    """Problems of an API prompt vs the schemas: unknown classes, missing required inputs,
    unknown inputs, widget values of the wrong type or out of range, links to missing nodes or
    output slots. Empty list = consistent. (Combo values are checked against the options unless
    the list is empty, e.g. a model folder with no files.)"""
    problems = []
    for nid, node in api.items():
        schema = object_info.get(node["class_type"])
        if schema is None:
            problems.append(f"node {nid}: unknown class {node['class_type']!r}")
            continue
        specs = {name: (spec, opt) for name, spec, opt in input_specs(schema)}
        for name, value in node["inputs"].items():
            if name not in specs:
                problems.append(f"node {nid} ({node['class_type']}): unknown input {name!r}")
                continue
            spec, _ = specs[name]
            if isinstance(value, list):
                src = api.get(value[0])
                if src is None:
                    problems.append(f"node {nid}.{name}: link to missing node {value[0]}")
                    continue
                outs = object_info.get(src["class_type"], {}).get("output", [])
                if not (0 <= value[1] < len(outs)):
                    problems.append(f"node {nid}.{name}: link to missing output {value}")
                elif input_type(spec) not in ("*",) and outs[value[1]] != input_type(spec) \
                        and not (input_type(spec) == "COMBO" and outs[value[1]] == "COMBO"):
                    problems.append(f"node {nid}.{name}: {input_type(spec)} input linked to a {outs[value[1]]} output")
                continue
            problems += [f"node {nid} ({node['class_type']}).{name}: {p}" for p in _check_value(spec, value)]
        for name, (spec, opt) in specs.items():
            if not opt and name not in node["inputs"]:
                problems.append(f"node {nid} ({node['class_type']}): required input {name!r} missing")
    return problems


def _check_value(spec, value) -> list[str]:
    t, opts = input_type(spec), spec_options(spec)
    if t == "COMBO":
        options = combo_options(spec)
        return [] if not options or value in options else [f"{value!r} not in {options[:8]}..."]
    if t == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{value!r} is not a boolean"]
    if t == "STRING":
        return [] if isinstance(value, str) else [f"{value!r} is not a string"]
    if t in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (t == "INT" and not isinstance(value, int)):
            return [f"{value!r} is not {t}"]
        out = []
        if "min" in opts and value < opts["min"]:
            out.append(f"{value} < min {opts['min']}")
        if "max" in opts and value > opts["max"]:
            out.append(f"{value} > max {opts['max']}")
        return out
    return []


# -- building UI workflows from a compact description ---------------------------------------

def build_ui(nodes: list[dict], object_info: dict, *, title: str = "", notes: list[dict] = ()) -> dict:
    """A UI-format workflow from node descriptions:
        {"id": 3, "type": "KSampler", "title": "...", "pos": [x, y], "widgets": {name: value},
         "links": {input_name: [source_id, output_slot]}, "size": [w, h] (optional)}
    Widget inputs left out take the schema default; seeds get control "fixed". notes: MarkdownNote
    nodes {"id", "pos", "size", "text"}."""
    nodes = [dict(n) for n in nodes]
    notes = [dict(n) for n in notes]
    auto_layout(nodes, object_info, notes)
    by_id = {n["id"]: n for n in nodes}
    ui_nodes, links = [], []
    out_links: dict[tuple[int, int], list[int]] = {}
    # link ids in a stable order: by target node id, then input order
    for n in sorted(nodes, key=lambda n: n["id"]):
        schema = object_info[n["type"]]
        for name, typ, _ in socket_inputs(schema):
            if name in n.get("links", {}):
                src, slot = n["links"][name]
                src_type = object_info[by_id[src]["type"]]["output"][slot]
                link_id = len(links) + 1
                links.append([link_id, src, slot, n["id"], None, src_type])
                out_links.setdefault((src, slot), []).append(link_id)
        unknown = set(n.get("links", {})) - {s[0] for s in socket_inputs(schema)}
        unknown |= set(n.get("widgets", {})) - {name for name, _ in widget_layout(schema)}
        if unknown:
            raise WorkflowFormatError(f"node {n['id']} ({n['type']}): unknown inputs {sorted(unknown)}")
    order = _execution_order(nodes)
    for n in sorted(nodes, key=lambda n: n["id"]):
        schema = object_info[n["type"]]
        inputs = []
        for name, typ, optional in socket_inputs(schema):
            spec = schema["input"]["optional" if optional else "required"][name]
            slot = {"name": name, "type": typ, "link": None}
            # what the frontend saves: the display name as localized_name (a "label" would be a
            # user's rename, drawn instead of the display name)
            label = spec_options(spec).get("display_name")
            if label:
                slot["localized_name"] = label
            if name in n.get("links", {}):
                link = next(l for l in links if l[3] == n["id"] and l[4] is None
                            and [l[1], l[2]] == list(n["links"][name]))
                link[4] = len(inputs)
                slot["link"] = link[0]
            inputs.append(slot)
        outputs = []
        for i, (typ, name) in enumerate(zip(schema["output"], schema.get("output_name") or schema["output"])):
            outputs.append({"name": name, "type": typ, "links": out_links.get((n["id"], i), []), "slot_index": i})
        values = []
        for name, kind in widget_layout(schema):
            if kind == "control":
                values.append(n.get("control", "fixed"))
            elif kind == "upload":
                values.append("image")
            else:
                values.append(_widget_value(n, name, schema))
        ui_nodes.append({
            "id": n["id"], "type": n["type"], "pos": list(n["pos"]), "size": list(n.get("size", [320, 120])),
            "flags": {}, "order": order[n["id"]], "mode": MODE_ALWAYS,
            "inputs": inputs, "outputs": outputs,
            "title": n.get("title") or schema.get("display_name") or n["type"],
            "properties": {"Node name for S&R": n["type"]},
            "widgets_values": values,
            **({"color": n["color"], "bgcolor": n["bgcolor"]} if "color" in n else {}),
        })
    for note in notes:
        ui_nodes.append({"id": note["id"], "type": "MarkdownNote", "pos": list(note["pos"]),
                         "size": list(note.get("size", [420, 300])), "flags": {}, "order": len(order) + len(ui_nodes),
                         "mode": MODE_ALWAYS, "inputs": [], "outputs": [], "title": note.get("title", "Read me"),
                         "properties": {}, "widgets_values": [note["text"]]})
    last_node_id = max(n["id"] for n in ui_nodes)
    # a stable id: the frontend keys open workflows by it (and a null would break its API-format sniffing)
    wf_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "amdm-workflow:" + (title or "untitled")))
    return {"id": wf_id, "revision": 0, "last_node_id": last_node_id, "last_link_id": len(links),
            "nodes": ui_nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": saved_view(nodes + notes), "amdm_title": title}, "version": 0.4}


# -- layout: room for both renderers, and a saved view that shows the whole graph ---------------
#
# Both renderers put a node's title (30 px) above its pos. The classic LiteGraph canvas gives a
# node about 20 px per slot row and 24 px per widget; the Vue "Nodes 2.0" renderer (the setting
# Comfy.VueNodes.Enabled, since frontend 1.27) draws the same node taller: about 28 px per widget,
# 68 px for a multiline text box, a 24 px footer with the pack's name on custom nodes (measured on
# frontends 1.32.9, 1.49.6 and 1.58.1; 1.32.9 also spreads a classic workflow by 1.2 when it opens
# it in Nodes 2.0). A node is saved with its classic height and stacked with room for the taller
# one, so neither renderer overlaps nodes; the browser test checks both.

TITLE = 30
COLUMN_WIDTH = (320, 400, 360, 360, 320, 360)   # default width of a column's nodes
COLUMN_GAP = 60
GAP = 50            # from a node's body to the next node's pos in its column (the title sits in it)
NOTE_HEIGHT = 500   # a Read-me note: its text takes up to about this much in Nodes 2.0
# The saved view (extra.ds) is made for a full-HD browser window less the frontend's chrome: the
# left sidebar, the workflow tabs and floating toolbars on top, the zoom controls at the bottom.
VIEW_WINDOW = (1920, 1080)
VIEW_MARGIN = {"left": 90, "top": 120, "right": 30, "bottom": 70}
VIEW_SCALE = (0.6, 1.0)     # below 0.6 the classic canvas stops drawing widget text


def _widget_specs(schema: dict):
    specs = {name: spec for name, spec, _ in input_specs(schema)}
    return [(name, kind, specs[name]) for name, kind in widget_layout(schema)]


def _image_area(n: dict) -> int:
    return 280 if n["type"] in ("SaveImage", "PreviewImage", "LoadImage") else 0


def _summary_area(n: dict) -> int:
    # the run summary box the web extension puts on the node
    return 160 if n["type"] in ("AMDM_MultiModelSampler", "AMDM_MultiModelSweep") else 0


def classic_height(n: dict, schema: dict | None) -> int:
    """About the body height the classic (LiteGraph) renderer gives a node: 20 px per slot row,
    24 px per widget, more for multiline text and image widgets."""
    if n["type"] == "MarkdownNote":
        return n.get("h", 260)
    if "h" in n:
        return n["h"]
    rows = max(len(socket_inputs(schema)), len(schema["output"]))
    h = rows * 20 + 8
    for _, kind, spec in _widget_specs(schema):
        multiline = kind == "value" and input_type(spec) == "STRING" and spec_options(spec).get("multiline")
        h += 90 if multiline else 24
    return h + _image_area(n) + _summary_area(n)


def vue_height(n: dict, schema: dict | None) -> int:
    """About the body height the Vue "Nodes 2.0" renderer gives a node, with a 16 px margin."""
    if n["type"] == "MarkdownNote":
        return max(n.get("h", 260), NOTE_HEIGHT)
    if "h" in n:
        return n["h"]
    rows = max(len(socket_inputs(schema)), len(schema["output"]), 1)
    h = 34 + 20 * (rows - 1) + 16
    for _, kind, spec in _widget_specs(schema):
        if kind == "value":
            multiline = input_type(spec) == "STRING" and spec_options(spec).get("multiline")
            h += 68 if multiline else 28
        else:
            h += 20
    if not str(schema.get("python_module", "")).startswith(("nodes", "comfy_extras")):
        h += 24
    if n["type"] == "LoadImage":
        h += 60             # its preview takes more room than in the classic canvas
    return h + _image_area(n) + _summary_area(n)


def estimate_height(n: dict, schema: dict | None) -> int:
    """The room a node needs in its column: the taller of the two renderers."""
    return max(classic_height(n, schema), vue_height(n, schema))


def auto_layout(nodes: list[dict], object_info: dict, notes: list[dict] = ()) -> None:
    """Fill in pos/size from each node's column ("col"), stacking nodes of a column in list order;
    a column is as wide as its widest node ("w", else the column's default) and COLUMN_GAP from the
    next. Each node gets "room": its height in the taller renderer (for the view)."""
    items = [n for n in list(nodes) + list(notes) if "pos" not in n]
    widths: dict[int, int] = {}
    for n in items:
        c = n.get("col", 0)
        widths[c] = max(widths.get(c, 0), n.get("w", COLUMN_WIDTH[min(c, len(COLUMN_WIDTH) - 1)]))
    xs, x = {}, 0
    for c in range(max(widths, default=-1) + 1):
        xs[c] = x
        x += widths.get(c, 0) + COLUMN_GAP
    y: dict[int, int] = {}
    for n in items:
        c = n.get("col", 0)
        kind = n.get("type", "MarkdownNote")
        schema = object_info.get(kind)
        typed = dict(n, type=kind)
        n["room"] = estimate_height(typed, schema)
        n["pos"] = [xs[c], y.get(c, 0)]
        n.setdefault("size", [n.get("w", widths[c]), classic_height(typed, schema)])
        y[c] = y.get(c, 0) + n["room"] + GAP


def saved_view(nodes: list[dict]) -> dict:
    """extra.ds for a workflow: the whole graph (titles included) inside VIEW_WINDOW less
    VIEW_MARGIN, as large as VIEW_SCALE allows. The frontends draw graph point p at screen
    (p + offset) * scale."""
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] for n in nodes) - TITLE
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + max(n["size"][1], n.get("room", 0)) for n in nodes)
    m = VIEW_MARGIN
    fit = min((VIEW_WINDOW[0] - m["left"] - m["right"]) / (x1 - x0),
              (VIEW_WINDOW[1] - m["top"] - m["bottom"]) / (y1 - y0))
    scale = math.floor(min(max(fit, VIEW_SCALE[0]), VIEW_SCALE[1]) * 100) / 100
    return {"scale": scale, "offset": [round(m["left"] / scale - x0, 1), round(m["top"] / scale - y0, 1)]}


def _widget_value(n, name, schema):
    if name in n.get("widgets", {}):
        return n["widgets"][name]
    for nm, spec, _ in input_specs(schema):
        if nm == name:
            opts = spec_options(spec)
            if "default" in opts:
                return opts["default"]
            if input_type(spec) == "COMBO" and combo_options(spec):
                return combo_options(spec)[0]
    raise WorkflowFormatError(f"node {n['id']} ({n['type']}): no value for widget {name!r} and no default")


def _execution_order(nodes) -> dict:
    deps = {n["id"]: {src for src, _ in n.get("links", {}).values()} for n in nodes}
    order, done = {}, set()
    while len(done) < len(deps):
        ready = sorted(i for i, d in deps.items() if i not in done and d <= done)
        if not ready:
            raise WorkflowFormatError("the workflow has a cycle")
        for i in ready:
            order[i] = len(order)
            done.add(i)
    return order


def substitute(api: dict, replacements: dict) -> dict:
    """A copy of an API prompt with widget values replaced: {old value: new value} for strings
    (e.g. placeholder model file names)."""
    out = copy.deepcopy(api)
    for node in out.values():
        for k, v in node["inputs"].items():
            if isinstance(v, str) and v in replacements:
                node["inputs"][k] = replacements[v]
    return out
