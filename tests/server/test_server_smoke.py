"""Proves the server harness: a real ComfyUI main.py (each host of the matrix) with the tiny models, the fixture node
pack and the pack under test; prompts over POST /prompt, progress over the websocket, /history,
/view, /interrupt."""
import io
import json

import pytest
import torch
from PIL import Image

import harness
from devtools import tiny_models
from harness import PromptRejected, decode_graph, node, sample_graph


def test_server_lists_stock_and_fixture_nodes(comfy_server):
    assert comfy_server.alive()
    assert comfy_server.object_info("KSampler")["output"] == ["LATENT"]
    cond = comfy_server.object_info("AMDMTest_Conditioning")
    assert cond["python_module"] == "custom_nodes.comfy_test_nodes"
    assert cond["output"] == ["CONDITIONING"]
    assert set(cond["input"]["required"]) == {"seed", "scale"}
    assert comfy_server.object_info("AMDMTest_LatentStats")["output_node"] is True
    assert comfy_server.object_info("NoSuchNode") is None
    unets = comfy_server.object_info("UNETLoader")["input"]["required"]["unet_name"][0]
    assert {"tiny_sd15_unet_a.safetensors", "tiny_sd15_unet_b.safetensors"} <= set(unets)


def test_pack_loads_in_server(comfy_server):
    """custom_nodes/amdm_pack -> repo root imports in the real loader and registers nodes."""
    info = comfy_server.object_info()
    ours = sorted(k for k, v in info.items() if v.get("python_module") == "custom_nodes." + harness.PACK_DIR_NAME)
    assert ours, ("no node from custom_nodes/amdm_pack in /object_info; server log:\n"
                  + comfy_server.server.log_tail(80))


def test_prompt_is_deterministic_per_seed(comfy_server):
    # Another module may have run this very graph: run seed 43 first so that seed 42 really executes
    # (ComfyUI's cache keeps a node's last result only). The loader may legitimately stay cached.
    other = comfy_server.run(sample_graph(seed=43))
    first = comfy_server.run(sample_graph(seed=42))
    stats = first.ui("7")
    assert stats["shape"] == [[1, 4, 8, 8]]
    assert len(stats["sha256"][0]) == 64
    # per-step progress of the KSampler arrives over the websocket
    steps = [p for p in first.progress if p["node"] == "5"]
    values = [p["value"] for p in steps]
    # form changed for hosts >= 0.9.2: progress is throttled, but the first and final updates are always
    # sent; so: starts at 1, only rises, ends at the step count (every step where nothing is throttled)
    assert values[0] == 1 and values[-1] == 4 and values == sorted(set(values)) and steps[-1]["max"] == 4
    assert {"5", "7"} <= set(first.executing)
    assert other.ui("7")["sha256"] != stats["sha256"]

    comfy_server.run(sample_graph(seed=43))
    again = comfy_server.run(sample_graph(seed=42))
    assert "5" in again.executing  # KSampler really ran again (not served from the cache)
    assert again.ui("7")["sha256"] == stats["sha256"]

    ref = tiny_models.REFERENCE_RUN
    if torch.__version__.startswith(ref["torch"]):  # same numbers as the in-process stock KSampler
        assert stats["mean"][0] == pytest.approx(ref["mean"], abs=1e-2)
        assert stats["std"][0] == pytest.approx(ref["std"], rel=1e-4)


def test_models_a_and_b_differ_over_http(comfy_server):
    a = comfy_server.run(sample_graph(unet=harness.UNET_A, seed=11)).ui("7")["sha256"]
    b = comfy_server.run(sample_graph(unet=harness.UNET_B, seed=11)).ui("7")["sha256"]
    assert a != b


def test_invalid_prompt_is_rejected_with_node_errors(comfy_server):
    graph = sample_graph()
    graph["1"]["inputs"]["unet_name"] = "no_such_model.safetensors"
    graph["5"]["inputs"]["steps"] = 0
    status, body = comfy_server.post_prompt(graph)
    assert status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["node_errors"]["1"]["errors"][0]["type"] == "value_not_in_list"
    assert body["node_errors"]["5"]["errors"][0]["type"] == "value_smaller_than_min"
    # an unknown class is rejected before per-node validation: empty node_errors
    with pytest.raises(PromptRejected) as exc:
        comfy_server.run({"1": node("NoSuchNode")})
    assert exc.value.status == 400
    # form changed in 0.33: the error type names the cause ('missing_node_type'); the class must be named
    body = exc.value.body
    assert body["error"]["type"] in ("invalid_prompt", "missing_node_type") and not body.get("node_errors")
    assert "NoSuchNode" in json.dumps(body["error"])


def test_decode_and_save_image_then_view(comfy_server):
    result = comfy_server.run(decode_graph(seed=3))
    pixels = []
    for out_id in ("7", "10"):  # checkpoint's VAE, VAELoader's VAE
        (image,) = result.ui(out_id)["images"]
        assert image["type"] == "output"
        data = comfy_server.view(image["filename"], image["subfolder"], image["type"])
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        img = Image.open(io.BytesIO(data))
        assert img.size == (64, 64) and img.mode == "RGB"
        lo, hi = img.convert("L").getextrema()
        assert hi - lo > 32  # not a flat image
        pixels.append(img.tobytes())
    assert pixels[0] == pixels[1]  # same TAESD weights through both loaders


def test_interrupt_stops_a_long_prompt(comfy_server):
    def interrupt_on_first_progress(mtype, data):
        if mtype == "progress" and data["value"] == 1:
            comfy_server.interrupt()

    result = comfy_server.run(sample_graph(seed=99, steps=10000), check=False, timeout=60,
                              on_message=interrupt_on_first_progress)
    assert result.status_str == "error"
    assert any(t == "execution_interrupted" for t, _ in result.messages)
    assert max(p["value"] for p in result.progress) < 10000
    assert comfy_server.alive()
    assert comfy_server.run(sample_graph(seed=100)).ok  # the next prompt is unaffected
