"""Registry readiness and what a user sees around the nodes. Every node id the pack registers
has a help page and a locales/en entry that mirrors its schema. .comfyignore keeps the development
files out of the published archive. pyproject.toml carries the registry fields.

In-process, no server: the node list comes from the pack's own comfy_entrypoint, as ComfyUI's
loader gets it. Each node's published schema comes from GET_NODE_INFO_V1, which is what
/object_info serves.

- Help pages. The frontend's NodeHelpService (comfyui-frontend-package 1.32.9 and 1.49.6) asks
  for /extensions/<custom node folder>/docs/<node id>/<locale>.md and then for
  /extensions/<folder>/docs/<node id>.md. The host serves the pack's WEB_DIRECTORY at
  /extensions/<folder>/. Both layouts are shipped, with the same text.
- Locales. The host's /i18n merges locales/<lang>/main.json and locales/<lang>/nodeDefs.json
  (under "nodeDefs") from every custom node folder. The frontend then shows the locale's display
  name, description and tooltips instead of the schema's, and uses inputs.<id>.name as the input's
  label. So the English file mirrors the schema. AMDM_UPDATE_LOCALES=1 rewrites it from the schema
  and keeps the labels it already has for inputs whose schema has no display_name.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import struct
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB = REPO_ROOT / "web"
DOCS = WEB / "docs"
NODE_DEFS = REPO_ROOT / "locales" / "en" / "nodeDefs.json"

# Folders that must not reach the registry archive, and what must.
DEV_ONLY = ("tests", "bench", "scripts", ".ci", "docs")
SHIPPED_DIRS = ("nodes", "amdm_core", "web", "locales", "workflows", "example_workflows")
SHIPPED_FILES = ("__init__.py", "LICENSE", "README.md", "pyproject.toml")


@pytest.fixture(scope="module")
def node_infos(pack):
    """{node id: V1 node info} for every node the pack's entrypoint registers."""
    async def _node_list():
        extension = await pack.comfy_entrypoint()
        return await extension.get_node_list()

    infos = {}
    for cls in asyncio.run(_node_list()):
        info = cls.GET_NODE_INFO_V1()
        assert info["name"] not in infos, f"node id {info['name']} is registered twice"
        infos[info["name"]] = info
    assert infos, "the pack registers no nodes"
    return infos


def _inputs(info: dict) -> list[tuple[str, dict]]:
    """(input id, options) in the order the frontend shows them."""
    out = []
    for section in ("required", "optional"):
        for name in info["input_order"].get(section, []):
            spec = info["input"][section][name]
            out.append((name, spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}))
    return out


# -- help pages ------------------------------------------------------------------------------------

def test_every_node_has_a_help_page_in_both_layouts(node_infos):
    problems = []
    for node_id, info in sorted(node_infos.items()):
        flat, per_locale = DOCS / f"{node_id}.md", DOCS / node_id / "en.md"
        if not flat.is_file() or not per_locale.is_file():
            problems.append(f"{node_id}: missing {flat.relative_to(REPO_ROOT)} or {per_locale.relative_to(REPO_ROOT)}")
            continue
        text = flat.read_text(encoding="utf-8")
        if per_locale.read_text(encoding="utf-8") != text:
            problems.append(f"{node_id}: {per_locale.relative_to(REPO_ROOT)} differs from {flat.name}")
        if text.splitlines()[0] != f"# {info['display_name']}":
            problems.append(f"{node_id}: the page's first line is not '# {info['display_name']}'")
        # every input id and output name is explained on the page (written as `name`)
        missing = [name for name, _ in _inputs(info) if f"`{name}`" not in text]
        missing += [name for name in info["output_name"] if f"`{name}`" not in text]
        if missing:
            problems.append(f"{node_id}: the page does not mention {missing}")
        for heading in ("## Inputs", "## Outputs", "## Example"):
            if not any(line.startswith(heading) for line in text.splitlines()):
                problems.append(f"{node_id}: no '{heading}' section")
    assert not problems, "\n".join(problems)


def test_help_pages_are_served_from_the_web_directory_and_none_is_stale(pack, node_infos):
    # the host serves WEB_DIRECTORY at /extensions/<custom node folder>/, the frontend reads docs/ there
    assert (REPO_ROOT / pack.WEB_DIRECTORY).resolve() == WEB.resolve()
    stale = [p.name for p in DOCS.iterdir() if (p.stem if p.is_file() else p.name) not in node_infos]
    assert not stale, f"help pages for node ids the pack does not register: {stale}"
    # the host loads every .js under the web directory as a frontend extension
    assert not list(DOCS.rglob("*.js"))
    for folder in (p for p in DOCS.iterdir() if p.is_dir()):
        assert sorted(f.name for f in folder.iterdir()) == ["en.md"], folder


# -- locales ---------------------------------------------------------------------------------------

def _expected_node_defs(node_infos: dict, current: dict) -> dict:
    out = {}
    for node_id, info in node_infos.items():
        labels = {k: v.get("name") for k, v in current.get(node_id, {}).get("inputs", {}).items()}
        inputs = {}
        for name, opts in _inputs(info):
            # the schema's display_name wins: the frontend uses the locale's name as the widget label
            inputs[name] = {"name": opts.get("display_name") or labels.get(name) or name,
                            "tooltip": opts.get("tooltip")}
            if opts.get("control_after_generate"):
                inputs["control_after_generate"] = {"name": "control after generate"}
        outputs = {str(i): {"name": name, "tooltip": tip}
                   for i, (name, tip) in enumerate(zip(info["output_name"], info["output_tooltips"]))}
        out[node_id] = {"display_name": info["display_name"], "description": info["description"],
                        "inputs": inputs, "outputs": outputs}
    return out


def _differences(have, want, path="") -> list[str]:
    if isinstance(have, dict) and isinstance(want, dict):
        out = []
        for key in sorted(set(have) | set(want)):
            where = f"{path}.{key}" if path else key
            if key not in have:
                out.append(f"{where}: missing")
            elif key not in want:
                out.append(f"{where}: not in the schema")
            else:
                out.extend(_differences(have[key], want[key], where))
        return out
    return [] if have == want else [f"{path}: {have!r} != schema {want!r}"]


def test_locales_mirror_the_schema(node_infos):
    current = json.loads(NODE_DEFS.read_text(encoding="utf-8"))
    expected = _expected_node_defs(node_infos, current)
    if os.environ.get("AMDM_UPDATE_LOCALES") == "1" and current != expected:
        NODE_DEFS.write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        current = expected
    diffs = _differences(current, expected)
    assert not diffs, (f"{NODE_DEFS.relative_to(REPO_ROOT)} is out of date (rerun this test with "
                       "AMDM_UPDATE_LOCALES=1 to rewrite it from the schema):\n" + "\n".join(diffs[:40]))
    for node_id, entry in current.items():
        for name, spec in entry["inputs"].items():
            assert spec.get("name", "").strip(), f"{node_id}.{name} has no label"
            assert name == "control_after_generate" or spec.get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_locale_folders_hold_valid_json():
    # the host loads main.json and nodeDefs.json / commands.json / settings.json of each language folder
    languages = [p for p in (REPO_ROOT / "locales").iterdir() if p.is_dir()]
    assert [p.name for p in languages] == ["en"]
    for path in languages[0].iterdir():
        assert path.suffix == ".json", path
        data = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(data, dict) and data, path
    main = json.loads((languages[0] / "main.json").read_text(encoding="utf-8"))
    assert "nodeDefs" not in main  # nodeDefs.json is merged under that key


# -- the published archive -------------------------------------------------------------------------

def _git(*args, cwd, env=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _kept_by_comfyignore(paths: list[str], scratch: Path) -> set[str]:
    """The paths that .comfyignore does not exclude. git itself evaluates the file as a .gitignore
    in a scratch repository that holds empty files at those paths (comfy-cli matches the same
    gitignore syntax with pathspec's gitwildmatch)."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    _git("init", "-q", ".", cwd=scratch, env=env)
    for rel in paths:
        target = scratch / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    shutil.copyfile(REPO_ROOT / ".comfyignore", scratch / ".gitignore")
    kept = _git("ls-files", "--others", "--exclude-standard", "-z", cwd=scratch, env=env).split("\0")
    return {p for p in kept if p} - {".gitignore"}


@pytest.fixture(scope="module")
def repo_files() -> list[str]:
    """What the archive is made of in a git checkout: the tracked files. The untracked files that
    git does not ignore are added, so that new files count before their first commit."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    out = _git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=REPO_ROOT)
    return sorted({p for p in out.split("\0") if p and (REPO_ROOT / p).exists()})


def test_comfyignore_keeps_development_files_out_of_the_archive(repo_files, tmp_path):
    kept = _kept_by_comfyignore(repo_files, tmp_path)
    for folder in DEV_ONLY:
        assert any(p.startswith(folder + "/") for p in repo_files), f"no {folder}/ files to check"
        leaked = sorted(p for p in kept if p.startswith(folder + "/"))
        assert not leaked, f".comfyignore lets {folder}/ into the archive: {leaked[:5]}"
    dropped = sorted(p for p in repo_files if p not in kept
                     and (p in SHIPPED_FILES or p.split("/")[0] in SHIPPED_DIRS))
    assert not dropped, f".comfyignore drops files the pack needs: {dropped[:10]}"
    for name in SHIPPED_FILES:
        assert name in kept, name
    assert any(p.startswith("web/docs/") for p in kept) and "locales/en/nodeDefs.json" in kept


def test_comfyignore_also_covers_a_tree_without_git(tmp_path):
    # outside a git checkout comfy-cli archives the whole tree minus .comfyignore
    local = [".cache/venv/bin/python", ".cache/ComfyUI/main.py", "nodes/__pycache__/x.cpython-311.pyc",
             "amdm_core/__pycache__/loop.cpython-311.pyc", "output/amdm_demo/amdm.png", ".pytest_cache/v/x",
             ".hypothesis/examples/x", "tests/browser/node_modules/playwright-core/index.js", "web/node_modules/x.js"]
    kept = _kept_by_comfyignore([*local, "nodes/x.py", "web/docs/AMDM_Member.md"], tmp_path)
    assert kept == {"nodes/x.py", "web/docs/AMDM_Member.md"}


# -- pyproject.toml ----------------------------------------------------------------------------------

def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    return struct.unpack(">II", head[16:24])


def test_pyproject_has_the_registry_fields():
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project, comfy = data["project"], data["tool"]["comfy"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", project["name"]) and "comfyui" not in project["name"].lower()
    assert comfy["PublisherId"].strip() and comfy["DisplayName"].strip()
    assert comfy["requires-comfyui"] == ">=0.3.75"
    # Icon: a URL (what the registry takes) to a file of this repository on its default branch
    owner, name = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", project["urls"]["Repository"]).groups()
    m = re.fullmatch(rf"https://raw\.githubusercontent\.com/{re.escape(owner)}/{re.escape(name)}/[^/]+/(.+)",
                     comfy["Icon"])
    assert m, f"Icon {comfy['Icon']!r} is not a raw URL into {owner}/{name}"
    icon = REPO_ROOT / m.group(1)
    assert icon.is_file() and icon.suffix in (".png", ".svg", ".jpg", ".jpeg", ".gif"), icon
    if icon.suffix == ".png":
        width, height = _png_size(icon)
        assert width == height and width <= 400, (width, height)
    # `web` would register web/ a second time (under the project name): amdm.js would load twice
    assert "web" not in comfy
    # `includes` overrides .comfyignore: an included folder ships everything in it, untracked too
    for include in comfy.get("includes", []):
        assert include.strip("/").split("/")[0] not in DEV_ONLY, include
