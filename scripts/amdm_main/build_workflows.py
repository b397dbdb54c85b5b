"""Regenerate the shipped workflows from workflow_specs.py:

    workflows/ui/<name>.json        UI format (drag and drop into ComfyUI)
    workflows/api/<name>.json       API-format twin (POST /prompt)
    example_workflows/<title>.json  the UI file again, where ComfyUI looks for a pack's templates,
                                    named by its title in the templates browser (TEMPLATE_TITLES)

Widget order comes from a real server's /object_info. Usage (from the repository root):

    .cache/venv/bin/python scripts/amdm_main/build_workflows.py [--server URL | --object-info FILE]

Without either, a headless ComfyUI with the pack is started for the schemas. The test
tests/server/test_workflows.py fails when the files and the specs drift apart.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.append(str(Path(__file__).resolve().parents[2]))     # devtools (appended: shadows nothing)
    __package__ = "amdm_main"  # noqa: A001

from amdm_main import workflow_specs  # noqa: E402
from amdm_main.workflow_format import build_ui, ui_to_api  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
UI_DIR = REPO_ROOT / "workflows" / "ui"
API_DIR = REPO_ROOT / "workflows" / "api"
TEMPLATE_DIR = REPO_ROOT / "example_workflows"


def dumps(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build_all(object_info: dict) -> dict[str, tuple[dict, dict]]:
    """name -> (UI workflow, API prompt)."""
    out = {}
    for name, (builder, description) in workflow_specs.WORKFLOWS.items():
        nodes, notes = builder()
        ui = build_ui(nodes, object_info, title=description, notes=notes)
        out[name] = (ui, ui_to_api(ui, object_info))
    return out


def template_path(name: str, suffix: str = ".json") -> Path:
    """example_workflows/<title>.json (or .jpg, its thumbnail) of a shipped workflow."""
    return TEMPLATE_DIR / f"{workflow_specs.TEMPLATE_TITLES[name]}{suffix}"


def write_all(object_info: dict) -> list[Path]:
    written = []
    for d in (UI_DIR, API_DIR, TEMPLATE_DIR):
        d.mkdir(parents=True, exist_ok=True)
    for name, (ui, api) in build_all(object_info).items():
        for path, data in ((UI_DIR / f"{name}.json", ui), (template_path(name), ui),
                           (API_DIR / f"{name}.json", api)):
            path.write_text(dumps(data))
            written.append(path)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", help="URL of a running ComfyUI with this pack")
    p.add_argument("--object-info", help="a saved /object_info JSON")
    ns = p.parse_args(argv)
    if ns.object_info:
        info = json.loads(Path(ns.object_info).read_text())
    elif ns.server:
        from devtools.client import ComfyClient
        info = ComfyClient(ns.server).object_info()
    else:
        from devtools.server import ComfyServer
        with ComfyServer(cpu=None) as server:
            info = server.start().object_info()
    for path in write_all(info):
        sys.stdout.write(f"{path.relative_to(REPO_ROOT)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
