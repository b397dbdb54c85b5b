"""The speed and memory benchmark's quick mode (bench/speed/run.py --quick), run by the suite so the
benchmark cannot rot: one subprocess (ComfyUI at sys.path[0], CPU, one torch thread, tiny models),
results written to a temporary folder, never over the committed bench/results/.

Only what holds on any machine is asserted: the outputs exist, the evaluation counts are exact
(N + (K-1)(e+1) from the node summary and from a UNet forward hook, in every variant), every ratio
is finite and positive, the timed aggregation step is bit-identical to the step amdm_core.amdm_sample
takes on the same states and costs far less than one forward of the tiny UNet at 4x64x64 (measured
~1e-4 of it), and the memory figures are consistent. Timing ratios of a single
quick repeat on a shared 2-core machine are noise and are not bounded tightly.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = REPO_ROOT / "bench" / "speed" / "run.py"
COMFYUI_PATH = Path(os.environ.get("COMFYUI_PATH") or REPO_ROOT / ".cache" / "ComfyUI").resolve()


def run_quick(tmp_path_factory, *extra):
    if not (COMFYUI_PATH / "nodes.py").is_file():
        pytest.fail(f"ComfyUI not found at {COMFYUI_PATH}: run scripts/setup_env.sh or set COMFYUI_PATH",
                    pytrace=False)
    out = tmp_path_factory.mktemp("speed_quick")
    env = dict(os.environ, COMFYUI_PATH=str(COMFYUI_PATH), PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--device", "cpu", "--out", str(out), *extra],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"bench/speed/run.py --quick exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-6000:]}", pytrace=False)
    results = json.loads((out / "results.json").read_text())
    return out, results, proc.stderr


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return run_quick(tmp_path_factory)


@pytest.fixture(scope="module")
def quick_flow(tmp_path_factory):
    """The flow family (--model sd3: tiny SD3-type MMDiTs, 16-channel latents), memory skipped."""
    return run_quick(tmp_path_factory, "--model", "sd3", "--skip", "memory")


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_outputs_and_provenance(quick):
    out, r, _ = quick
    for name in ("results.json", "table.md"):
        assert (out / name).stat().st_size > 0, name
    for name in ("overhead_vs_K.png", "overhead_vs_window.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert r["command"].startswith("python bench/speed/run.py --quick")
    assert r["mode"] == "quick" and r["device"]["type"] == "cpu" and r["model"]["kind"] == "tiny"
    assert r["model"]["detected_as"] == "SD15"
    assert r["torch"] and r["comfyui"]
    if (REPO_ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", r["git"]["commit"]), r["git"]
    table = (out / "table.md").read_text()
    assert r["command"] in table and r["git"]["commit"] in table


def test_every_variant_does_the_same_evaluations(quick):
    _, r, _ = quick
    groups = {e["group"] for e in r["overhead"]}
    assert groups == {"K", "window", "free"}
    assert sorted({e["K"] for e in r["overhead"] if e["group"] == "K"}) == r["settings"]["ks"]
    assert sorted({e["window_end"] for e in r["overhead"] if e["group"] == "window"}) == r["settings"]["window_ends"]
    for e in r["overhead"]:
        n, k, w = e["steps"], e["K"], e["window_end"]
        if e["group"] == "free":          # helpers at weight 0: neither loaded nor evaluated (nor listed)
            expected, members = n, [n]
        else:
            expected, members = n + (k - 1) * (w + 1), [n] + [w + 1] * (k - 1)
            assert e["summary_window_steps"] == [1, w], e
        assert e["expected_evaluations"] == expected
        assert e["summary_total_evaluations"] == expected, e
        assert e["summary_member_evaluations"] == members, e
        for variant, calls in e["unet_calls"].items():
            assert calls == [expected], (variant, e)
        assert all(e["finite"].values()), e


def test_ratios_are_finite_and_positive(quick):
    _, r, _ = quick
    for e in r["overhead"]:
        keys = ["ratio_vs_single"] + ([] if e["group"] == "free" else ["ratio_vs_separate"])
        for key in keys:
            stats = e[key]
            assert stats["n"] == e["repeats"] >= 1
            for v in stats["all"] + [stats["median"]]:
                assert _finite_positive(v) and v < 10, (key, e)
        for times in list(e["seconds"].values()) + list(e["cpu_seconds"].values()):
            assert all(_finite_positive(t) for t in times)
        # CPU: the time outside the UNet forwards (host + pack orchestration) is measured per variant
        assert all(_finite_positive(v) for v in e["outside_unet_ms_per_eval"].values()), e
        assert math.isfinite(e["extra_outside_ms_per_eval_vs_single"]["median"])


def test_math_is_far_cheaper_than_one_forward(quick):
    _, r, _ = quick
    rows = {tuple(m["latent"]): m for m in r["math"]}
    row = rows[(4, 64, 64)]
    assert _finite_positive(row["forward"]["seconds"])
    modes = {(en["mode"], en["K"]) for en in row["entries"]}
    assert modes == {(m, k) for m in ("spherical", "slerp") for k in r["settings"]["math_ks"]}
    for en in row["entries"]:
        # what is timed is the core's own aggregation step: checked against amdm_sample on the same states
        assert en["matches_amdm_sample"] is True, en
        # measured 1e-4..3e-4 on 2 loaded cores: a ratio of 1 would be a broken benchmark or loop
        assert _finite_positive(en["seconds"]) and _finite_positive(en["ratio_vs_forward"]), en
        assert en["ratio_vs_forward"] < 1, en


def test_memory_is_measured_against_the_weights(quick):
    _, r, _ = quick
    assert r["memory"] and r["memory_method"]
    per_member = r["model"]["weight_bytes_per_member"]
    for row in r["memory"]:
        k = row["K"]
        assert row["mms"]["weights_bytes"] == k * per_member
        assert row["stock_single_N"]["weights_bytes"] == per_member
        for variant in ("mms", "stock_separate", "stock_single_N"):
            m = row[variant]
            assert m["working_bytes"] >= 0 and m["peak_bytes"] >= m["weights_bytes"], (variant, m)
        assert math.isfinite(row["mms_peak_vs_weights"]) and row["mms_peak_vs_weights"] >= 1


def test_flow_family_does_the_same_evaluations_as_stock(quick_flow):
    """The speed benchmark's flow family: the members are read back as SD3 (flow matching), the latent
    has 16 channels, every variant does exactly the evaluations the plan says, and the timed
    aggregation is the core's own step (ratios are printed by the benchmark, not bounded here)."""
    _, r, _ = quick_flow
    assert r["model"]["kind"] == "sd3" and r["model"]["detected_as"] == "SD3"
    assert r["settings"]["latent"][1] == 16
    test_every_variant_does_the_same_evaluations(quick_flow)
    for e in r["overhead"]:
        for v in [e["ratio_vs_single"]["median"]] + ([] if e["group"] == "free" else [e["ratio_vs_separate"]["median"]]):
            assert _finite_positive(v) and v < 10, e
    (row,) = r["math"]
    assert row["latent"] == [16, 16, 16]      # math_sizes capped at the MMDiT's 16 x 16
    assert all(en["matches_amdm_sample"] is True for en in row["entries"])
