"""API mode end to end: the shipped API-format workflows posted to a real headless ComfyUI (the
session server: its own random loopback port, the pack under custom_nodes, generated models),
followed on the websocket, outputs read through /history and /view.

Each workflow runs as shipped except for what makes it small on a CPU (api_helpers.for_test:
placeholder files -> the generated demo models, 64x64 latents, 6 steps, GLIGEN boxes scaled). The
demo checkpoints carry a random CLIP-L, so the stock CLIPTextEncode / GLIGENTextBoxApply nodes
run for real, and the generated GLIGEN model loads through the stock GLIGENLoader."""
import json

import pytest

import api_helpers as ah
from harness import PromptRejected

STEPS = 6


@pytest.fixture(scope="module")
def names(comfy_server, tiny_model_set):
    names = ah.ensure_demo_models(tiny_model_set)
    ah.upload_input_image(comfy_server)
    return names


def run_workflow(client, name, names, **kw):
    g = ah.for_test(ah.load_api(name), names, steps=STEPS, **kw)
    return g, client.run(g, timeout=240)


def check_images(client, result, g, size=64):
    images = ah.saved_images(client, result, g)
    assert images and all(images.values())
    for pics in images.values():
        for img, raw in pics:
            assert raw[:8] == b"\x89PNG\r\n\x1a\n" and img.size == (size, size) and img.mode == "RGB"
            lo, hi = img.convert("L").getextrema()
            assert hi - lo > 16, "flat image"
    return images


def test_two_models_paper_workflow(comfy_server, names):
    g, result = run_workflow(comfy_server, "amdm_sd15_two_models", names)
    check_images(comfy_server, result, g)
    s = ah.summary_of(result, g)
    # steps 1-3 aggregated; a run of N steps with window end e costs N + (K-1)(e+1) member steps
    # (ddim_uniform may give one step more than asked: N is the run's own count)
    n = s["steps"]
    assert s["window_steps"] == [1, 3] and n in (STEPS, STEPS + 1)
    assert [m["evaluations"] for m in s["members"]] == [n, 4]
    assert s["total_evaluations"] == n + 4
    assert s["members"][0]["base"] and s["members"][0]["normalized_weight"] == pytest.approx(0.5, abs=1e-3)
    assert s["window_sigmas"][0] > s["window_sigmas"][1] > 0
    assert s["deviation"] == {"step": pytest.approx(0.3516, abs=1e-4), "mode": "absolute", "target": "faithful",
                              "members": "base"}
    (sid,) = ah.node_ids(g, "AMDM_MultiModelSampler")
    assert result.ui(sid)["text"][0].startswith(f"AMDM: aggregated steps 1-3 of {n}")
    # the progress bar counts every member step, monotonically, up to the planned total
    values = [p["value"] for p in result.progress if p["node"] == sid]
    assert values == sorted(values) and values[-1] == n + 4


def test_three_members_with_gligen_layout(comfy_server, names):
    g, result = run_workflow(comfy_server, "amdm_sd15_three_members_gligen", names)
    check_images(comfy_server, result, g)
    s = ah.summary_of(result, g)
    assert len(s["members"]) == 3 and [m["evaluations"] for m in s["members"]] == [s["steps"], 4, 4]
    w = [m["normalized_weight"] for m in s["members"]]
    assert sum(x * x for x in w) == pytest.approx(1.0, abs=1e-3) and w[0] < w[1] < w[2]
    # the layout member really gets GLIGEN boxes: without them the image changes
    boxes = [k for k, n in g.items() if n["class_type"] == "GLIGENTextBoxApply"]
    (layout,) = [k for k, n in g.items() if n["class_type"] == "AMDM_Member" and n["inputs"]["positive"][0] in boxes]
    plain = json.loads(json.dumps(g))
    plain[layout]["inputs"]["positive"] = plain[boxes[0]]["inputs"]["conditioning_to"]
    other = comfy_server.run(plain, timeout=240)
    a = ah.saved_images(comfy_server, result, g)
    b = ah.saved_images(comfy_server, other, plain)
    assert next(iter(a.values()))[0][0].tobytes() != next(iter(b.values()))[0][0].tobytes()


def test_guider_route_with_custom_sigmas(comfy_server, names):
    g, result = run_workflow(comfy_server, "amdm_sd15_guider_custom_sigmas", names)
    check_images(comfy_server, result, g)
    (k,) = ah.node_ids(g, "KarrasScheduler")
    assert g[k]["inputs"]["steps"] == STEPS
    (adv,) = ah.node_ids(g, "SamplerCustomAdvanced")
    values = [p["value"] for p in result.progress if p["node"] == adv]
    # form changed for hosts >= 0.9.2 (progress throttled; first and final always sent): every step
    # was reported where nothing is throttled; now: rising, ending at the step count
    assert adv in result.executing and values and values == sorted(set(values)) and values[-1] == STEPS


def test_img2img_with_denoise_below_one(comfy_server, names):
    g, result = run_workflow(comfy_server, "amdm_sd15_img2img", names)
    check_images(comfy_server, result, g)
    s = ah.summary_of(result, g)
    (sid,) = ah.node_ids(g, "AMDM_MultiModelSampler")
    assert g[sid]["inputs"]["denoise"] == 0.6
    assert s["window_steps"] == [1, 3] and s["steps"] in (STEPS, STEPS + 1)
    assert s["window_sigmas"][0] < 14.0      # the run starts below the full noise level


def test_handoff_by_noise_level(comfy_server, names):
    g, result = run_workflow(comfy_server, "amdm_sd15_handoff_compose", names)
    check_images(comfy_server, result, g)
    s = ah.summary_of(result, g)
    assert s["operator"] == "compose" and s["window_steps"] is None
    base, helper = [m["evaluations"] for m in s["members"]]
    # adjacent ranges: exactly one member per evaluation, the helper first (30 % of the noise range)
    assert base > 0 and helper > 0 and base + helper == s["steps"]
    (sid,) = ah.node_ids(g, "AMDM_MultiModelSampler")
    assert "handoff" in result.ui(sid)["text"][0]


def test_windowed_composition(comfy_server, names):
    g, result = run_workflow(comfy_server, "amdm_sd15_windowed_compose", names)
    check_images(comfy_server, result, g)
    s = ah.summary_of(result, g)
    assert s["operator"] == "compose" and s["window_steps"] is not None
    base, helper = [m["evaluations"] for m in s["members"]]
    assert base == s["steps"] and 0 < helper < s["steps"]


def test_sweep_workflow_as_shipped_runs(comfy_server, names):
    """The shipped Sweep workflow as the frontend sends it (every optional input included)."""
    g = ah.for_test(ah.load_api("amdm_sd15_sweep"), names, steps=2)
    (sw,) = ah.node_ids(g, "AMDM_MultiModelSweep")
    g[sw]["inputs"].update(values="1", values_2="0.5")
    assert comfy_server.run(g, timeout=300).ok


def test_sweep_makes_a_labelled_grid(comfy_server, names):
    g = ah.for_test(ah.load_api("amdm_sd15_sweep"), names, steps=4)
    (sw,) = ah.node_ids(g, "AMDM_MultiModelSweep")
    g[sw]["inputs"].update(values="1, 2, 3", values_2="0.5, 0.7")
    for k in ("base_range_start", "base_range_end", "base_range_unit"):   # optional: API clients may omit them
        g[sw]["inputs"].pop(k)
    result = comfy_server.run(g, timeout=300)
    (save,) = ah.node_ids(g, "SaveImage")
    (img, _raw), = ah.saved_images(comfy_server, result, g)[save]
    # 3 columns (window_end) x 2 rows (base_weight) of 64x64 tiles, each under a 14-px caption strip
    assert img.size == (3 * 64, 2 * (64 + 14))
    tiles = [img.crop((c * 64, r * 78 + 14, c * 64 + 64, r * 78 + 78)).tobytes() for r in range(2) for c in range(3)]
    assert len(set(tiles)) == 6, "every configuration should give its own image"
    strip = img.crop((0, 0, 64, 14)).convert("L")
    assert strip.getextrema()[0] < 128, "caption text missing"    # dark label text on the white strip
    # the same grid is previewed on the node and its labels are listed
    ui = result.ui(sw)
    (preview,) = ui["images"]
    assert comfy_server.view(preview["filename"], preview["subfolder"], preview["type"])[:4] == b"\x89PNG"
    text = ui["text"][0]
    assert text.startswith("Sweep of 6 configurations") and text.count("window_end") >= 3


def test_same_seed_gives_the_same_bytes(comfy_server, names):
    name = "amdm_sd15_two_models"
    (sid,) = ah.node_ids(ah.load_api(name), "AMDM_MultiModelSampler")
    g1, r1 = run_workflow(comfy_server, name, names, seed=1234, prefix="amdm_seed")
    g2, r2 = run_workflow(comfy_server, name, names, seed=4321, prefix="amdm_seed")
    g3, r3 = run_workflow(comfy_server, name, names, seed=1234, prefix="amdm_seed")
    assert sid in r3.executing, "the sampler must really run again, not come from the cache"
    (a,), (b,), (c,) = (next(iter(ah.saved_images(comfy_server, r, g).values())) for r, g in
                        ((r1, g1), (r2, g2), (r3, g3)))
    assert a[0].tobytes() == c[0].tobytes() and a[0].tobytes() != b[0].tobytes()
    # different files on disk, same pixels: compare decoded pixels, the PNG metadata holds the prompt
    assert r1.ui(ah.node_ids(g1, "SaveImage")[0])["images"][0]["filename"] != \
        r3.ui(ah.node_ids(g3, "SaveImage")[0])["images"][0]["filename"]


def test_negative_weight_is_rejected_with_http_400(comfy_server, names):
    g = ah.for_test(ah.load_api("amdm_sd15_two_models"), names)
    (mid,) = ah.node_ids(g, "AMDM_Member")
    g[mid]["inputs"]["weight"] = -0.5
    with pytest.raises(PromptRejected) as exc:
        comfy_server.run(g)
    assert exc.value.status == 400
    (err,) = exc.value.body["node_errors"][mid]["errors"]
    assert err["type"] == "value_smaller_than_min" and err["extra_info"]["input_name"] == "weight"
    assert exc.value.body["node_errors"][mid]["class_type"] == "AMDM_Member"
    assert comfy_server.alive()


def test_nine_members_fail_naming_the_member(comfy_server, names):
    g, new = ah.member_chain(ah.for_test(ah.load_api("amdm_sd15_two_models"), names), extra_members=7)
    result = comfy_server.run(g, check=False)
    assert result.status_str == "error"
    err = result.error
    assert err["node_type"] == "AMDM_Member" and err["node_id"] == new[-1]
    msg = err["exception_message"]
    # the copied member node keeps the shipped file's title, which the label now shows beside the id
    title = g[new[-1]].get("_meta", {}).get("title")
    named = f'member 9 "{title}" (node #{new[-1]})' if title and title != "Multi-Model Member" else \
        f"member 9 (node #{new[-1]})"
    assert named in msg and "more than 8 members" in msg
    assert comfy_server.alive()


def test_bad_window_fails_naming_the_input(comfy_server, names):
    g = ah.for_test(ah.load_api("amdm_sd15_two_models"), names)
    (aid,) = ah.node_ids(g, "AMDM_SphericalAggregate")
    g[aid]["inputs"].update(window_unit="percent", window_start=0.5, window_end=0.2)
    result = comfy_server.run(g, check=False)
    assert result.status_str == "error" and result.error["node_type"] == "AMDM_SphericalAggregate"
    assert "'window_start' (0.5) is after 'window_end' (0.2)" in result.error["exception_message"]


def test_interrupt_stops_a_long_run_mid_window_and_the_next_run_succeeds(comfy_server, names):
    g = ah.for_test(ah.load_api("amdm_sd15_two_models"), names, steps=4000, seed=99, prefix="amdm_interrupt")
    (aid,) = ah.node_ids(g, "AMDM_SphericalAggregate")
    g[aid]["inputs"].update(window_start=1, window_end=3000)        # a window thousands of steps long
    (sid,) = ah.node_ids(g, "AMDM_MultiModelSampler")
    sent = []

    def interrupt_inside_window(mtype, data):
        # progress counts member steps; value 6 = inside the window (step 0 + 2 members x steps 1-2)
        if mtype == "progress" and data["node"] == sid and data["value"] >= 6 and not sent:
            sent.append(data["value"])
            comfy_server.interrupt()

    result = comfy_server.run(g, check=False, timeout=240, on_message=interrupt_inside_window)
    assert sent, "no progress from the sampler"
    assert result.status_str == "error"
    assert any(t == "execution_interrupted" for t, _ in result.messages)
    done = max(p["value"] for p in result.progress if p["node"] == sid)
    planned = result.progress[-1]["max"]
    # (ddim_uniform caps the run at the model's ~1000 timesteps: about 1000 steps, all in the window)
    assert planned > 1000 and done < 100      # stopped early, within the window
    assert comfy_server.alive()
    # the next run is unaffected
    g2, r2 = run_workflow(comfy_server, "amdm_sd15_two_models", names, seed=100)
    s2 = ah.summary_of(r2, g2)
    assert r2.ok and s2["total_evaluations"] == s2["steps"] + 4
    assert comfy_server.alive()
