"""Helpers for the workflow / API-mode / main-command tests (not part of the harness).

The shipped workflows name placeholder model files; tests run them on the project's generated
demo models (devtools/demo_models.py: two tiny SD1.5 checkpoints with a random CLIP-L,
a tiny GLIGEN), written next to the session's tiny models so the session server sees them.
"""
from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT / "scripts") not in sys.path:
    sys.path.append(str(REPO_ROOT / "scripts"))

from amdm_main import prompt_edit, workflow_format, workflow_specs  # noqa: E402
from devtools import demo_models  # noqa: E402

UI_DIR = REPO_ROOT / "workflows" / "ui"
API_DIR = REPO_ROOT / "workflows" / "api"
TEMPLATE_DIR = REPO_ROOT / "example_workflows"
WORKFLOW_NAMES = list(workflow_specs.WORKFLOWS)
COMFY_EXAMPLE_IMAGE_NAME = "amdm_test_input.png"

SAMPLER_TYPES = ("AMDM_MultiModelSampler", "AMDM_MultiModelSweep")


def load_ui(name: str) -> dict:
    return json.loads((UI_DIR / f"{name}.json").read_text())


def load_api(name: str) -> dict:
    return json.loads((API_DIR / f"{name}.json").read_text())


def ensure_demo_models(tiny_model_set) -> dict:
    """Generate the demo models into the session's model folder (once; ~10 s, ~300 MB) and return
    {placeholder file name: demo file name}."""
    paths = demo_models.make_demo_models(tiny_model_set.base_dir)
    return {workflow_specs.CONTENT_CKPT: paths["content"].name,
            workflow_specs.STYLE_CKPT: paths["style"].name,
            workflow_specs.WEAK_CKPT: paths["style"].name,
            workflow_specs.GLIGEN_MODEL: paths["gligen"].name,
            workflow_specs.INPUT_IMAGE: COMFY_EXAMPLE_IMAGE_NAME}


def upload_input_image(client, size=(96, 80)) -> str:
    """POST /upload/image a small deterministic RGB gradient (what the LoadImage upload button does)."""
    from PIL import Image

    w, h = size
    img = Image.new("RGB", size)
    img.putdata([(int(255 * x / (w - 1)), int(255 * y / (h - 1)), 128) for y in range(h) for x in range(w)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    body, ctype = multipart({"image": (COMFY_EXAMPLE_IMAGE_NAME, buf.getvalue(), "image/png"), "overwrite": "true"})
    status, raw = _post_raw(client.base_url, "/upload/image", body, ctype)
    assert status == 200, raw
    return json.loads(raw)["name"]


def multipart(fields: dict) -> tuple[bytes, str]:
    boundary = "amdmtestboundary7MA4YWxk"
    out = b""
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data, ctype = value
            out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n"
                    f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
        else:
            out += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post_raw(base_url: str, path: str, body: bytes, ctype: str):
    import urllib.error
    import urllib.request
    req = urllib.request.Request(base_url + path, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def for_test(api: dict, names: dict, *, size: int = 64, steps: int = 6, seed: int | None = None,
             prefix: str | None = None) -> dict:
    """The shipped API workflow made small for CPU tests: placeholder files -> demo files, latents
    and image scaling to size x size, every step count to `steps`, GLIGEN boxes scaled with the
    image, optionally another seed and output prefix. Everything else (nodes, links, settings) as
    shipped."""
    g = workflow_format.substitute(api, names)
    prompt_edit.apply_overrides(g, seed=seed, steps=steps, size=size)     # the main command's own
    if prefix is not None:
        for node in g.values():
            if node["class_type"] == "SaveImage":
                node["inputs"]["filename_prefix"] = prefix
    return g


def node_ids(api: dict, class_type: str) -> list[str]:
    return [k for k, v in api.items() if v["class_type"] == class_type]


def summary_of(result, api: dict) -> dict:
    """The Multi-Model Sampler's run summary from /history (its ui output amdm_summary)."""
    (sid,) = node_ids(api, "AMDM_MultiModelSampler")
    return json.loads(result.ui(sid)["amdm_summary"][0])


def saved_images(client, result, api: dict) -> dict:
    """{SaveImage node id: [(PIL image, raw PNG bytes), ...]} read back through /view."""
    from PIL import Image

    out = {}
    for sid in node_ids(api, "SaveImage"):
        out[sid] = []
        for im in result.ui(sid)["images"]:
            raw = client.view(im["filename"], im["subfolder"], im["type"])
            out[sid].append((Image.open(io.BytesIO(raw)), raw))
    return out


def member_chain(api: dict, extra_members: int) -> tuple[dict, list[str]]:
    """A copy of the two-model graph with `extra_members` more Multi-Model Member nodes chained in
    front of the sampler (each a copy of the style member); returns (graph, new member ids)."""
    g = copy.deepcopy(api)
    (sid,) = node_ids(g, "AMDM_MultiModelSampler")
    (mid,) = node_ids(g, "AMDM_Member")
    prev, new = g[sid]["inputs"]["members"], []
    next_id = max(int(k) for k in g) + 1
    for _ in range(extra_members):
        nid = str(next_id)
        next_id += 1
        node = copy.deepcopy(g[mid])
        node["inputs"]["previous"] = prev
        g[nid] = node
        prev = [nid, 0]
        new.append(nid)
    g[sid]["inputs"]["members"] = prev
    return g, new
