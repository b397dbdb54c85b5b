"""Model Guidance and Superposition over HTTP: small API graphs (the tiny SD1.5 UNets, the
AMDMTest_Conditioning fixture node, the tiny TAESD) posted to the session's real server; images read
through /view, the run summary from /history, the latent's sha256 from AMDMTest_LatentStats."""
import io
import json

from PIL import Image

import harness
from harness import node

BASE, WEAK, POS, NEG, HELPER_POS, LATENT = "1", "2", "3", "4", "5", "6"
MEMBER, MODE, SAMPLER, VAE, DECODE, SAVE, STATS = "10", "11", "20", "21", "22", "23", "30"


def cooperation_prompt(mode_node: dict, *, seed=5, steps=6, cfg=2.0, base_weight=1.0, helper_weight=1.0,
                       sampler_name="euler", scheduler="normal", extra_members=0, prefix="amdm_coop"):
    g = {
        BASE: node("UNETLoader", unet_name=harness.UNET_A, weight_dtype="default"),
        WEAK: node("UNETLoader", unet_name=harness.UNET_B, weight_dtype="default"),
        POS: node("AMDMTest_Conditioning", seed=1, scale=1.0),
        NEG: node("AMDMTest_Conditioning", seed=0, scale=0.0),
        HELPER_POS: node("AMDMTest_Conditioning", seed=2, scale=1.0),
        LATENT: node("EmptyLatentImage", width=64, height=64, batch_size=1),
        MEMBER: node("AMDM_Member", model=[WEAK, 0], positive=[HELPER_POS, 0], negative=[NEG, 0], cfg=2.0,
                     weight=helper_weight),
        MODE: mode_node,
        SAMPLER: node("AMDM_MultiModelSampler", model=[BASE, 0], positive=[POS, 0], negative=[NEG, 0],
                      members=[MEMBER, 0], latent_image=[LATENT, 0], seed=seed, steps=steps, cfg=cfg,
                      sampler_name=sampler_name, scheduler=scheduler, denoise=1.0, base_weight=base_weight,
                      aggregation=[MODE, 0]),
        VAE: node("VAELoader", vae_name=harness.TINY_VAE),
        DECODE: node("VAEDecode", samples=[SAMPLER, 0], vae=[VAE, 0]),
        SAVE: node("SaveImage", images=[DECODE, 0], filename_prefix=prefix),
        STATS: node("AMDMTest_LatentStats", samples=[SAMPLER, 0]),
    }
    prev = MEMBER
    for i in range(extra_members):
        nid = str(40 + i)
        g[nid] = node("AMDM_Member", model=[WEAK, 0], positive=[HELPER_POS, 0], negative=[NEG, 0], cfg=2.0,
                      weight=1.0, previous=[prev, 0])
        prev = nid
    g[SAMPLER]["inputs"]["members"] = [prev, 0]
    return g


def guidance_node(form="autoguidance_cfg", w=2.0, window=(0.0, 1.0)):
    return node("AMDM_ModelGuidance", form=form, w=w, window_unit="percent", window_start=window[0],
                window_end=window[1])


def superposition_node(mode="or", temperature=1.0):
    return node("AMDM_Superposition", mode=mode, temperature=temperature)


def summary(result) -> dict:
    return json.loads(result.ui(SAMPLER)["amdm_summary"][0])


def image(client, result):
    (im,) = result.ui(SAVE)["images"]
    raw = client.view(im["filename"], im["subfolder"], im["type"])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(raw))
    assert img.size == (64, 64) and img.mode == "RGB"
    return img


def test_model_guidance_over_http(comfy_server):
    result = comfy_server.run(cooperation_prompt(guidance_node(w=2.0), steps=6), timeout=180)
    guided = image(comfy_server, result)
    s = summary(result)
    assert s["operator"] == "guidance" and s["window_steps"] == [0, 5]
    g = s["guidance"]
    assert g["form"] == "autoguidance_cfg" and g["evaluations_per_step"] == 3
    assert g["evaluations"] == {"strong_cond": 6, "strong_uncond": 6, "weak_cond": 6}
    assert result.ui(SAMPLER)["text"][0].startswith("Model Guidance (autoguidance_cfg, w 2): guided steps 0-5 of 6")
    # w = 1: the strong (base) model alone, the stock KSampler's latent bit for bit
    alone = comfy_server.run(cooperation_prompt(guidance_node(w=1.0), steps=6, prefix="amdm_coop_w1"), timeout=180)
    stock = comfy_server.run(harness.sample_graph(seed=5, steps=6, cfg=2.0, cond_seed=1), timeout=180)
    assert alone.ui(STATS)["sha256"] == stock.ui("7")["sha256"]
    assert alone.ui(STATS)["sha256"] != result.ui(STATS)["sha256"]
    assert image(comfy_server, alone).tobytes() != guided.tobytes()
    plain = comfy_server.run(cooperation_prompt(guidance_node(form="autoguidance"), steps=6), timeout=180)
    assert summary(plain)["guidance"]["evaluations"] == {"strong_cond": 6, "strong_uncond": 0, "weak_cond": 6}


def test_model_guidance_refuses_two_helpers_naming_them(comfy_server):
    result = comfy_server.run(cooperation_prompt(guidance_node(), extra_members=1), check=False, timeout=120)
    assert result.status_str == "error" and result.error["node_id"] == SAMPLER
    msg = result.error["exception_message"]
    assert "Model Guidance takes exactly one helper member" in msg and "member 3 (node #40)" in msg
    assert comfy_server.alive()


def test_superposition_over_http(comfy_server):
    g = cooperation_prompt(superposition_node("or"), steps=8, sampler_name="dpmpp_2m", prefix="amdm_superpose")
    result = comfy_server.run(g, timeout=180)
    image(comfy_server, result)
    s = summary(result)
    p = s["superposition"]
    assert s["operator"] == "superpose" and p["mode"] == "or" and p["steps"] == 8
    assert p["sampler_ignored"] == "dpmpp_2m" and p["evaluations_per_step"] == 4
    assert [m["evaluations"] for m in s["members"]] == [8, 8]
    assert "sampler 'dpmpp_2m' not used" in result.ui(SAMPLER)["text"][0]
    # seeded: another seed changes the latent; the same seed with another sampler name (not used, but a
    # new prompt, so the sampler really runs again) gives the same latent
    other = comfy_server.run(cooperation_prompt(superposition_node("or"), steps=8, seed=6), timeout=180)
    again = comfy_server.run(cooperation_prompt(superposition_node("or"), steps=8, sampler_name="euler"),
                             timeout=180)
    assert SAMPLER in again.executing
    assert other.ui(STATS)["sha256"] != result.ui(STATS)["sha256"]
    assert again.ui(STATS)["sha256"] == result.ui(STATS)["sha256"]
    and_run = comfy_server.run(cooperation_prompt(superposition_node("and"), steps=8, helper_weight=2.0),
                               timeout=180)
    q = summary(and_run)["superposition"]
    assert q["mode"] == "and" and q["max_log_density_gap"] < 1e-3 and max(abs(v) for v in q["log_density"][0]) > 1


def test_superposition_bad_input_is_named(comfy_server):
    result = comfy_server.run(cooperation_prompt(superposition_node("and", temperature=2.0)), check=False,
                              timeout=120)
    assert result.status_str == "error" and result.error["node_type"] == "AMDM_Superposition"
    assert "'temperature' = 2.0 applies to mode 'or' only" in result.error["exception_message"]
    result = comfy_server.run(cooperation_prompt(superposition_node(), base_weight=0.0), check=False, timeout=120)
    assert result.status_str == "error" and "'base_weight' = 0" in result.error["exception_message"]
    assert comfy_server.alive()
