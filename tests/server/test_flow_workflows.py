"""The flow-family workflows (two Flux finetunes with AMDM; Wan 2.2's expert handoff) posted to the real
server and followed to their saved image / video.

They run as shipped except for what cannot be small. Placeholder model and VAE files become the
generated ones (devtools/flow_models.py), and the run is shrunk to 64 px, 6 steps and 5 frames (as
api_helpers.for_test does for every workflow). Flux's T5-XXL and Wan's umT5-XXL cannot be small:
ComfyUI's configs fix their width, billions of weights. So each CLIPTextEncode becomes the test
pack's seeded AMDMTest_Conditioning of the width the tiny model reads: 768 for the tiny Flux, 16 x 4096
for Wan. The text encoder loaders are then unused and dropped. FluxGuidance, ModelSamplingSD3, the
member ranges, the sampler settings, VAEDecode and SaveAnimatedWEBP stay as shipped.
"""
import io

import pytest
from PIL import Image

import api_helpers as ah
from amdm_main import workflow_specs as ws
from devtools import flow_models as fm

STEPS = 6


@pytest.fixture(scope="module")
def flow_names(comfy_server, tiny_model_set):
    fm.make_flow_models(tiny_model_set.models_dir)
    return {ws.FLUX_A: fm.FLUX_FILE, ws.FLUX_B: fm.FLUX_FILE, ws.FLUX_VAE: fm.VAE_FILES["taesd16"],
            ws.WAN_HIGH: fm.WAN_FILES["wan_high"], ws.WAN_LOW: fm.WAN_FILES["wan_low"],
            ws.WAN_VAE: fm.VAE_FILES["wan_vae"]}


def without_text_encoders(g: dict, tokens: int, width: int) -> dict:
    """Every CLIPTextEncode -> AMDMTest_Conditioning (seeded by its node id and text), loaders dropped."""
    loaders = {"DualCLIPLoader", "CLIPLoader"}
    for nid, node in list(g.items()):
        if node["class_type"] == "CLIPTextEncode":
            seed = int(nid) * 7919 + len(node["inputs"]["text"])
            g[nid] = {"class_type": "AMDMTest_Conditioning",
                      "inputs": {"seed": seed, "scale": 1.0, "tokens": tokens, "width": width}}
    for nid in [k for k, v in g.items() if v["class_type"] in loaders]:
        del g[nid]
    return g


def prepared(name, names, tokens, width):
    g = without_text_encoders(ah.for_test(ah.load_api(name), names, steps=STEPS), tokens, width)
    left = [v for node in g.values() for v in node["inputs"].values() if isinstance(v, str) and v in ws.PLACEHOLDERS]
    assert not left, f"placeholders left: {left}"
    return g


def test_two_flux_finetunes_amdm_workflow(comfy_server, flow_names):
    g = prepared("amdm_flux_two_models", flow_names, 77, 768)
    result = comfy_server.run(g, timeout=300)
    s = ah.summary_of(result, g)
    # cfg 1 (guidance distilled): one evaluation per member step; helper on steps 0-3 (window 1-3)
    assert s["steps"] == STEPS and s["window_steps"] == [1, 3]
    assert [m["evaluations"] for m in s["members"]] == [STEPS, 4] and s["total_evaluations"] == STEPS + 4
    assert s["members"][0]["normalized_weight"] == pytest.approx(0.5, abs=1e-3)
    (img, raw), = next(iter(ah.saved_images(comfy_server, result, g).values()))
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and img.size == (64, 64)
    lo, hi = img.convert("L").getextrema()
    assert hi - lo > 16, "flat image"
    # the helper's own FluxGuidance reaches it: another value, another image
    (fg,) = [k for k, v in g.items() if v["class_type"] == "FluxGuidance" and v["inputs"]["conditioning"][0] == "7"]
    g2 = {k: {**v, "inputs": dict(v["inputs"])} for k, v in g.items()}
    g2[fg]["inputs"]["guidance"] = 8.0
    other = comfy_server.run(g2, timeout=300)
    (img2, _), = next(iter(ah.saved_images(comfy_server, other, g2).values()))
    assert img2.tobytes() != img.tobytes()


def test_wan22_expert_handoff_workflow_saves_an_animation(comfy_server, flow_names):
    g = prepared("wan22_experts_handoff", flow_names, 16, 4096)
    result = comfy_server.run(g, timeout=300)
    s = ah.summary_of(result, g)
    # shift 8, 6 steps, simple: sigmas 1, .976, .941, .889 are above the boundary 0.875, .8 and .615 below
    assert s["steps"] == STEPS
    assert [m["evaluations"] for m in s["members"]] == [2, 4]     # base = low-noise expert, then the high-noise
    (save,) = ah.node_ids(g, "SaveAnimatedWEBP")
    files = result.ui(save)["images"]
    assert len(files) == 1 and files[0]["filename"].endswith(".webp")
    raw = comfy_server.view(files[0]["filename"], files[0]["subfolder"], files[0]["type"])
    img = Image.open(io.BytesIO(raw))
    # 5 frames asked, 2 latent frames, which the Wan VAE decodes to 1 + 4 = 5 frames of 64 x 64
    assert raw[:4] == b"RIFF" and img.n_frames == 5 and img.size == (64, 64)
