"""AMDM for ComfyUI: Aggregation of Multiple Diffusion Models as a node pack.

Exports the V3 entrypoint only (V1 mappings would win over it). Outside ComfyUI (tests, tools)
importing this file is harmless: the nodes are only loaded when the host API is importable.
"""
try:
    from comfy_api.latest import ComfyExtension, io  # noqa: F401  (probe: are we inside ComfyUI?)
except ImportError:  # imported by tests or tools, not by ComfyUI
    pass
else:
    from .nodes import comfy_entrypoint  # noqa: F401

WEB_DIRECTORY = "./web"
