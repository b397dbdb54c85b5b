"""The model-guidance and superposition workflows posted to the real server as shipped (made small as
every workflow is: api_helpers.for_test), followed to their images and run summaries."""
import pytest

import api_helpers as ah

STEPS = 6


@pytest.fixture(scope="module")
def names(comfy_server, tiny_model_set):
    return ah.ensure_demo_models(tiny_model_set)


def run(client, name, names, **kw):
    g = ah.for_test(ah.load_api(name), names, steps=STEPS, **kw)
    result = client.run(g, timeout=240)
    (pics,) = ah.saved_images(client, result, g).values()
    img = pics[0][0]
    lo, hi = img.convert("L").getextrema()
    assert img.size == (64, 64) and hi - lo > 16, "flat image"
    return g, result, ah.summary_of(result, g), img


def test_model_guidance_workflow(comfy_server, names):
    g, result, s, img = run(comfy_server, "amdm_sd15_model_guidance", names)
    assert s["operator"] == "guidance" and s["aggregation"] == "autoguidance_cfg"
    gd = s["guidance"]
    # the paper's form over the whole run: strong cond + strong uncond + weak cond at every step
    assert gd["w"] == 2.0 and gd["strong_cfg"] == 5.0 and gd["guided_steps"] == STEPS
    assert gd["evaluations"] == {"strong_cond": STEPS, "strong_uncond": STEPS, "weak_cond": STEPS}
    assert [m["evaluations"] for m in s["members"]] == [STEPS, STEPS]
    (sid,) = ah.node_ids(g, "AMDM_MultiModelSampler")
    assert result.ui(sid)["text"][0].startswith("Model Guidance (autoguidance_cfg, w 2)")
    # guidance weight 1 is the strong model alone: another image than w 2
    (mg,) = ah.node_ids(g, "AMDM_ModelGuidance")
    g1 = ah.for_test(ah.load_api("amdm_sd15_model_guidance"), names, steps=STEPS)
    g1[mg]["inputs"]["w"] = 1.0
    other = comfy_server.run(g1, timeout=240)
    (pics,) = ah.saved_images(comfy_server, other, g1).values()
    assert pics[0][0].tobytes() != img.tobytes()
    assert ah.summary_of(other, g1)["guidance"]["evaluations"]["weak_cond"] == 0


def test_superposition_workflow(comfy_server, names):
    g, result, s, img = run(comfy_server, "amdm_sd15_superposition", names)
    sp = s["superposition"]
    assert s["operator"] == "superpose" and sp["mode"] == "or" and sp["steps"] == STEPS
    # two members, each with its own CFG: 4 model passes per SDE step; the sampler is not used
    assert sp["evaluations_per_step"] == 4 and sp["sampler_used"] is False
    assert [m["evaluations"] for m in s["members"]] == [STEPS, STEPS]
    # OR: per-sample weights sum to 1
    assert sum(sp["kappa_mean"]) == pytest.approx(1.0, abs=1e-3)
    assert all(sum(row) == pytest.approx(1.0, abs=1e-6) for row in sp["kappa_last"])
    # the seed drives the SDE's noise: another seed, another image (same-seed reproducibility is checked
    # in-process, where no cache can answer for the sampler)
    g2 = ah.for_test(ah.load_api("amdm_sd15_superposition"), names, steps=STEPS, seed=7)
    other = comfy_server.run(g2, timeout=240)
    (pics,) = ah.saved_images(comfy_server, other, g2).values()
    assert pics[0][0].tobytes() != img.tobytes()
