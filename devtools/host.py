"""Where the ComfyUI host is and how it is imported in-process; importing the pack as ComfyUI does.

One CPU rule for every in-process user (tests, benchmarks, model generators): ComfyUI runs on the
CPU unless AMDM_GPU=1 (then it picks its own device). ComfyUI goes to sys.path[0]: the repository
root has a nodes/ package that would shadow ComfyUI's nodes.py.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("AMDM_CACHE") or REPO_ROOT / ".cache")
PACK_MODULE = "amdm_pack"
HOST_ORDER = ("0.33.0", "0.3.75")     # newest first: the default when COMFYUI_PATH is not set


def comfyui_path() -> Path:
    """COMFYUI_PATH, else the newest host that scripts/setup_env.sh has set up in .cache/hosts/."""
    if os.environ.get("COMFYUI_PATH"):
        return Path(os.environ["COMFYUI_PATH"]).resolve()
    for version in HOST_ORDER:
        path = CACHE / "hosts" / version / "ComfyUI"
        if (path / "main.py").is_file():
            return path.resolve()
    return (CACHE / "hosts" / HOST_ORDER[-1] / "ComfyUI").resolve()


def comfyui_present(path: Path | None = None) -> bool:
    path = path or comfyui_path()
    return (path / "nodes.py").is_file() and (path / "comfy" / "model_management.py").is_file()


def use_gpu() -> bool:
    return os.environ.get("AMDM_GPU") == "1"


def put_comfyui_first(path: Path | None = None) -> Path:
    """ComfyUI at sys.path[0], and the CPU rule applied before comfy.model_management is imported
    (it picks its device at import)."""
    path = path or comfyui_path()
    if not comfyui_present(path):
        raise FileNotFoundError(f"ComfyUI not found at {path}: run scripts/setup_env.sh or set COMFYUI_PATH")
    p = str(path)
    while p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)
    if "comfy.model_management" not in sys.modules and not use_gpu():
        from comfy.cli_args import args
        args.cpu = True
    return path


def check_comfyui_origin(path: Path | None = None) -> None:
    """nodes and comfy.model_management must come from this ComfyUI, not from the repo's nodes/."""
    import comfy.model_management
    import nodes
    path = path or comfyui_path()
    for mod, expected in ((nodes, path / "nodes.py"), (comfy.model_management, path / "comfy" / "model_management.py")):
        if Path(mod.__file__).resolve() != expected.resolve():
            raise ImportError(f"{mod.__name__} was imported from {mod.__file__}, not {expected}: something put "
                              f"another path (the repo root?) ahead of ComfyUI on sys.path")


def _exec_as(name: str, spec):
    """Execute a module spec under `name` (in sys.modules first, as an import would), once."""
    if name not in sys.modules:
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def load_file_module(name: str, path: Path):
    """Import a file under a fixed module name, once (tests/ is not a package)."""
    return _exec_as(name, importlib.util.spec_from_file_location(name, path))


def import_pack():
    """The repository imported as package `amdm_pack`, as ComfyUI imports custom_nodes/<pack>
    (relative imports inside the pack resolve through amdm_pack.*). ComfyUI must be importable."""
    return _exec_as(PACK_MODULE, importlib.util.spec_from_file_location(
        PACK_MODULE, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]))
