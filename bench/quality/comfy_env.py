"""Where ComfyUI and the pack come from, and how they are imported in-process.

Exactly as the host tests do it (tests/host/conftest.py): ComfyUI at sys.path[0] (the repo root
has a nodes/ package that would shadow ComfyUI's nodes.py; `python -m bench...` puts the repo
root first, so it is moved behind ComfyUI), args.cpu = True before comfy.model_management is
imported (unless AMDM_BENCH_GPU=1), and the repo root imported as package `amdm_pack` via its
__init__.py, as ComfyUI imports custom_nodes/<pack>.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COMFYUI_PATH = Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()
PACK_MODULE = "amdm_pack"


def comfy_on_path() -> Path:
    if not (COMFYUI_PATH / "nodes.py").is_file():
        raise SystemExit(f"ComfyUI not found at {COMFYUI_PATH}: run scripts/setup_env.sh or set COMFYUI_PATH")
    p = str(COMFYUI_PATH)
    while p in sys.path:
        sys.path.remove(p)
    sys.path.insert(0, p)
    if "comfy.model_management" not in sys.modules and os.environ.get("AMDM_BENCH_GPU") != "1":
        from comfy.cli_args import args
        args.cpu = True
    return COMFYUI_PATH


def model_sampling():
    """ComfyUI's own SD discrete schedule (ModelSamplingDiscrete, 'linear' = SD's scaled_linear
    betas 0.00085..0.012, 1000 steps) with EPS prediction, as BaseModel builds it."""
    comfy_on_path()
    import comfy.model_sampling as ms

    class ModelSampling(ms.ModelSamplingDiscrete, ms.EPS):
        pass
    return ModelSampling()


def import_comfy():
    comfy_on_path()
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sample
    import comfy.samplers
    import comfy.supported_models_base
    import comfy.utils  # noqa: F401  (loaded for callers that reach comfy.utils)
    import nodes
    if Path(nodes.__file__).resolve() != COMFYUI_PATH / "nodes.py":
        raise SystemExit(f"nodes was imported from {nodes.__file__}, not ComfyUI's nodes.py")
    return nodes


def import_pack():
    import_comfy()
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    init = REPO_ROOT / "__init__.py"
    spec = importlib.util.spec_from_file_location(PACK_MODULE, init, submodule_search_locations=[str(REPO_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[PACK_MODULE]
        raise
    import amdm_pack.nodes  # noqa: F401  (the V3 nodes; loaded because comfy_api is importable)
    return module
