"""Where ComfyUI and the pack come from, and how they are imported in-process.

As the host tests do it, through devtools.host: ComfyUI at sys.path[0] (the repo root has a
nodes/ package that would shadow ComfyUI's nodes.py), the CPU unless AMDM_GPU=1, and the repo
root imported as package `amdm_pack`, as ComfyUI imports custom_nodes/<pack>.
"""
from __future__ import annotations

from pathlib import Path

from devtools.host import REPO_ROOT, check_comfyui_origin, comfyui_path, put_comfyui_first  # noqa: F401
from devtools.host import import_pack as devtools_import_pack

COMFYUI_PATH = comfyui_path()


def comfy_on_path() -> Path:
    try:
        return put_comfyui_first(COMFYUI_PATH)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None


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
    check_comfyui_origin(COMFYUI_PATH)
    return nodes


def import_pack():
    import_comfy()
    module = devtools_import_pack()
    import amdm_pack.nodes  # noqa: F401  (the V3 nodes; loaded because comfy_api is importable)
    return module
