"""The server layer's harness: the project's one launcher and client (devtools.server,
devtools.client) with the fixture node pack installed by default, and API-format graphs for the
tiny models and the fixture nodes.

ComfyServer   devtools' launcher; custom_nodes default: the pack + tests/fixtures/comfy_test_nodes.
ComfyClient   object_info, post_prompt, wait, run (-> RunResult), view, interrupt, alive.
"""
from __future__ import annotations

from devtools.client import (ClientError, ComfyClient, PromptFailed, PromptRejected, RunResult,  # noqa: F401
                             ServerError)
from devtools.host import REPO_ROOT
from devtools.server import default_comfyui_path  # noqa: F401  (the tests' name for devtools.host.comfyui_path)
from devtools.server import PACK_DIR_NAME, free_port, tail  # noqa: F401
from devtools.server import ComfyServer as _LauncherServer

TEST_NODES_DIR = REPO_ROOT / "tests" / "fixtures" / "comfy_test_nodes"


class ComfyServer(_LauncherServer):
    """devtools' launcher with the fixture node pack beside the pack under test."""

    def __init__(self, *args, custom_nodes: dict | None = None, **kwargs):
        if custom_nodes is None:
            custom_nodes = {PACK_DIR_NAME: REPO_ROOT, "comfy_test_nodes": TEST_NODES_DIR}
        super().__init__(*args, custom_nodes=custom_nodes, **kwargs)


# -- API-format graphs ------------------------------------------------------------------------

UNET_A = "tiny_sd15_unet_a.safetensors"
UNET_B = "tiny_sd15_unet_b.safetensors"
CKPT_A = "tiny_sd15_a.safetensors"
TINY_VAE = "tiny_taesd_vae.safetensors"


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def sample_graph(*, unet: str = UNET_A, seed: int = 42, steps: int = 4, cfg: float = 2.0,
                 sampler_name: str = "euler", scheduler: str = "normal", denoise: float = 1.0,
                 cond_seed: int = 0, width: int = 64, height: int = 64, batch: int = 1) -> dict:
    """UNETLoader -> KSampler (positive AMDMTest_Conditioning(cond_seed), negative all-zero) on
    an EmptyLatentImage -> AMDMTest_LatentStats (node "7"). Same defaults as the host layer's
    stock_ksampler(model_a) with make_cond(0) / make_cond(0.0)."""
    return {
        "1": node("UNETLoader", unet_name=unet, weight_dtype="default"),
        "2": node("AMDMTest_Conditioning", seed=cond_seed, scale=1.0),
        "3": node("AMDMTest_Conditioning", seed=0, scale=0.0),
        "4": node("EmptyLatentImage", width=width, height=height, batch_size=batch),
        "5": node("KSampler", model=["1", 0], positive=["2", 0], negative=["3", 0], latent_image=["4", 0],
                  seed=seed, steps=steps, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                  denoise=denoise),
        "7": node("AMDMTest_LatentStats", samples=["5", 0]),
    }


def decode_graph(*, seed: int = 42, steps: int = 4, prefix: str = "amdm_smoke") -> dict:
    """CheckpointLoaderSimple(tiny_sd15_a: UNet + TAESD, no CLIP) -> KSampler -> VAEDecode, once
    with the checkpoint's VAE (SaveImage "7") and once with VAELoader(tiny_taesd_vae) (SaveImage "10")."""
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=CKPT_A),
        "2": node("AMDMTest_Conditioning", seed=0, scale=1.0),
        "3": node("AMDMTest_Conditioning", seed=0, scale=0.0),
        "4": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "5": node("KSampler", model=["1", 0], positive=["2", 0], negative=["3", 0], latent_image=["4", 0],
                  seed=seed, steps=steps, cfg=2.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "6": node("VAEDecode", samples=["5", 0], vae=["1", 2]),
        "7": node("SaveImage", images=["6", 0], filename_prefix=prefix + "_ckpt"),
        "8": node("VAELoader", vae_name=TINY_VAE),
        "9": node("VAEDecode", samples=["5", 0], vae=["8", 0]),
        "10": node("SaveImage", images=["9", 0], filename_prefix=prefix + "_vae"),
    }
