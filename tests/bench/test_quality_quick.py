"""The quality benchmark's quick mode, so that it cannot rot: it runs end to end through the real
host and the pack's nodes on the committed toy weights, and its numbers behave as they must.

Runs `python -m bench.quality.run --quick --out <tmp>` in a subprocess (the benchmark sets up
ComfyUI's sys.path itself and must not share torch/ComfyUI state with other tests). About a minute
on a 2-core machine.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = REPO_ROOT / "bench" / "quality" / "weights"

# Bounds on the committed aspect classifiers' held-out accuracy (measured: see classifiers.json).
MIN_CLF_ACCURACY = {"class": 0.93, "position": 0.99, "style": 0.99}


@pytest.fixture(scope="module")
def quick(tmp_path_factory, quick_bench):
    out = tmp_path_factory.mktemp("quality_quick")
    return out, quick_bench("bench.quality.run", out, "quick benchmark")


def ok_rows(doc):
    for r in doc["methods"]:
        for set_name, s in r["sets"].items():
            if s.get("status") == "ok":
                yield r, set_name, s


def row(doc, name, set_name):
    for r in doc["methods"]:
        if r["name"] == name and r["sets"].get(set_name, {}).get("status") == "ok":
            return r["sets"][set_name]
    raise AssertionError(f"no result for {name!r} on {set_name!r}")


def test_weights_are_committed_files():
    for f in ("model_A", "model_B", "model_C", "clf_class", "clf_position", "clf_style"):
        p = WEIGHTS / f"{f}.safetensors"
        assert p.is_file(), p
        assert p.stat().st_size < 2 * 1024 * 1024, p
    prov = json.loads((WEIGHTS / "provenance.json").read_text())
    assert prov["command"].startswith("python -m bench.quality.train")
    assert "load_digits" in prov["data"]


def test_outputs_written(quick):
    out, doc = quick
    for f in ("results.json", "table.md", "success_vs_window.png", "overhead_vs_k.png", "run.log"):
        assert (out / f).is_file(), f
    assert list((out / "grids").glob("*.png")), "no sample grids"
    assert doc["command"].startswith("python -m bench.quality.run --quick")
    assert len(doc["git"]["commit"]) == 40
    assert "Commit: `" in (out / "table.md").read_text()


def test_rates_and_intervals_are_valid(quick):
    _, doc = quick
    n_ok = 0
    for r, set_name, s in ok_rows(doc):
        n_ok += 1
        for key in ("joint", "class", "position", "style"):
            if key not in s:
                continue
            v = s[key]
            assert 0.0 <= v["rate"] <= 1.0, (r["name"], key)
            assert 0.0 <= v["ci95"][0] <= v["rate"] <= v["ci95"][1] <= 1.0, (r["name"], key, v)
            assert v["n"] == s["n"] == doc["mode"]["samples"] * doc["mode"]["targets_per_set"]
        assert 0.0 < s["quality"]["classifier_confidence"] <= 1.0
        assert s["quality"]["nn_rms_distance"] >= 0.0
    assert n_ok >= 15


def test_amdm_evaluation_counts(quick):
    """AMDM costs N + (K-1)(e+1) member steps (e = the last aggregated step); every member step is one
    batched cond+uncond forward of the network (2 rows per sample)."""
    _, doc = quick
    seen = 0
    for r, _, s in ok_rows(doc):
        if r["method"] != "amdm" or r["params"].get("ranges"):
            continue
        seen += 1
        n, k = r["steps"], len(r["params"]["models"])
        e = s["detail"]["summary"]["window_steps"][1]
        assert s["compute"]["evaluations_per_run"] == n + (k - 1) * (e + 1), r["name"]
        assert s["detail"]["member_evaluations"] == [n] + [e + 1] * (k - 1), r["name"]
    assert seen >= 5
    for r, _, s in ok_rows(doc):
        if r["method"] == "guidance":        # a strong call batches cond + uncond in the CFG form: see below
            continue
        assert s["compute"]["network_rows_per_sample"] == 2 * s["compute"]["evaluations_per_run"], r["name"]
    for o in doc["overhead_vs_k"]:
        assert o["evaluations_per_run"] == o["expected"] == o["steps"] + (o["K"] - 1) * 4


def test_single_models_control_their_own_aspect(quick):
    """The ecosystem is what it claims: A decides the class, B the position, C the style, and none
    of them the others (so the targets can tell methods apart)."""
    _, doc = quick
    for set_name in ("agree", "conflict"):
        a = row(doc, "single A (class)", set_name)
        b = row(doc, "single B (position)", set_name)
        assert a["class"]["rate"] >= b["class"]["rate"] + 0.4, set_name
        assert b["position"]["rate"] >= 0.75, set_name
        assert b["class"]["rate"] <= 0.5, set_name
    a, b = row(doc, "single A (class)", "conflict"), row(doc, "single B (position)", "conflict")
    assert b["position"]["rate"] >= a["position"]["rate"] + 0.4      # A pulls toward the home quadrant
    assert a["joint"]["rate"] <= 0.5
    c = row(doc, "single C (style)", "three")
    assert c["style"]["rate"] >= 0.75
    assert c["joint"]["rate"] <= 0.25


def test_classifiers_accuracy(quick):
    _, doc = quick
    measured = doc["reference"]["classifier_heldout_accuracy"]
    committed = json.loads((WEIGHTS / "classifiers.json").read_text())["accuracy"]
    for aspect, bound in MIN_CLF_ACCURACY.items():
        assert measured[aspect] >= bound, (aspect, measured[aspect])
        assert abs(measured[aspect] - committed[aspect]) < 1e-3, aspect


def test_host_weight_patching_is_undone(quick):
    _, doc = quick
    assert doc["merge_sanity_max_abs_diff"] == 0.0


def test_every_method_ran_on_every_set(quick):
    _, doc = quick
    for r in doc["methods"]:
        for s in r["sets"].values():
            assert s["status"] == "ok", (r["name"], s)


def _new_mode_rows(doc, method):
    return [(r, s) for r, _, s in ok_rows(doc) if r["method"] == method]


def test_model_guidance_rows(quick):
    """Model Guidance over the whole run: the strong member at every step (cond + uncond in the CFG form,
    cond only in plain autoguidance), the weak member's conditional pass at every step; the networks'
    own row counts agree with the node's counts."""
    _, doc = quick
    rows = _new_mode_rows(doc, "guidance")
    assert {r["params"]["form"] for r, _ in rows} == {"autoguidance", "autoguidance_cfg"}
    for r, s in rows:
        n, g = r["steps"], s["detail"]["guidance"]
        cfg_form = r["params"]["form"] == "autoguidance_cfg"
        assert g["evaluations"] == {"strong_cond": n, "strong_uncond": n if cfg_form else 0, "weak_cond": n}, r["name"]
        assert g["guided_steps"] == n and g["base_alone_evaluations"] == 0, r["name"]
        assert g["evaluations_per_step"] == (3 if cfg_form else 2), r["name"]
        assert s["detail"]["member_evaluations"] == [n, n], r["name"]
        assert s["compute"]["evaluations_per_run"] == 2 * n, r["name"]
        assert s["compute"]["network_rows_per_sample"] == s["detail"]["expected_rows_per_sample"] \
            == (3 if cfg_form else 2) * n, r["name"]


def test_superposition_rows(quick):
    """Superposition: every member with its own CFG at every step of the node's own SDE stepper; AND
    keeps the members' log-densities equal."""
    _, doc = quick
    rows = _new_mode_rows(doc, "superpose")
    assert rows
    for r, s in rows:
        n, k = r["steps"], len(r["params"]["models"])
        p = s["detail"]["superposition"]
        assert p["steps"] == n and p["sampler_used"] is False, r["name"]
        assert s["detail"]["member_evaluations"] == [n] * k, r["name"]
        assert s["compute"]["evaluations_per_run"] == k * n, r["name"]
        assert s["compute"]["network_rows_per_sample"] == 2 * k * n, r["name"]
        assert abs(sum(p["kappa_mean"]) - 1.0) < 1e-3, r["name"]
        if p["mode"] == "and":
            assert p["max_log_density_gap"] < 1e-3, r["name"]


def test_per_noise_interval_rows(quick):
    """Spherical Aggregate's "per noise interval" strength: the base keeps the requested share over the
    window (as the node reports it), at AMDM's usual cost."""
    _, doc = quick
    rows = [(r, s) for r, s in _new_mode_rows(doc, "amdm") if r["params"].get("strength") == "per noise interval"]
    assert rows
    for r, s in rows:
        d = s["detail"]
        assert d["strength"] == "per noise interval", r["name"]
        assert d["target_share"] == r["params"]["retained_share"], r["name"]
        assert abs(d["retained_share"] - r["params"]["retained_share"]) < 1e-4, r["name"]


def test_new_mode_results_are_finite(quick):
    _, doc = quick
    seen = set()
    for r, _, s in ok_rows(doc):
        assert s["quality"]["nonfinite_samples"] == 0, r["name"]
        assert 0.0 < s["quality"]["classifier_confidence"] <= 1.0 and 0.0 <= s["quality"]["nn_rms_distance"] < 2.0
        if r["group"] in ("guidance", "superposition", "invariance"):
            seen.add(r["group"])
            assert 0.0 <= s["joint"]["rate"] <= 1.0
    assert seen == {"guidance", "superposition", "invariance"}
