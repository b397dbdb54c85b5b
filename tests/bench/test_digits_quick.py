"""The digit-set benchmark's quick mode (bench/digits): every mode on the committed demo set through
a real headless ComfyUI (stock loaders, POST /prompt), judged picture by picture. Checks that each
mode ran on every target with the evaluations it must cost, that the pictures are digits on a clean
background (not noise), and that the cooperation modes change the picture. About a minute.

Runs `python -m bench.digits.run --quick --out <tmp>` in a subprocess (it starts its own server).
"""
from __future__ import annotations

import os

import pytest

MODES = ("base_alone", "helper_alone", "amdm", "compose", "handoff", "guidance", "superposition")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, quick_bench):
    out = tmp_path_factory.mktemp("digits_quick")
    return out, quick_bench("bench.digits.run", out, "quick digit benchmark")


def test_every_mode_ran_on_every_target(quick):
    _, doc = quick
    prof = doc["profile"]
    assert doc["modes"] == list(MODES)
    assert set(doc["sets"]) == {"conflict", "agree", "home"}
    for s, rows in doc["sets"].items():
        n = prof["targets"][s] * prof["batch"]
        assert len(doc["targets"][s]) == prof["targets"][s]
        for m in MODES:
            assert rows[m]["joint"]["n"] == n == len(doc["pictures"][s][m]), (s, m)
            assert 0.0 <= rows[m]["joint"]["rate"] <= 1.0


def test_evaluations_per_mode(quick):
    """What each mode costs, as the nodes count it (a CFG step is one evaluation)."""
    _, doc = quick
    n = doc["profile"]["steps"]
    ev = doc["sets"]["conflict"]
    for m in ("base_alone", "helper_alone", "handoff"):         # handoff: one member per step
        assert ev[m]["evaluations_per_run"] == n, m
    for m in ("compose", "guidance", "superposition"):          # both members at every step
        assert ev[m]["evaluations_per_run"] == 2 * n, m
    assert n < ev["amdm"]["evaluations_per_run"] < 2 * n         # the helper only inside the window


def test_pictures_are_digits_on_a_clean_background(quick):
    """Not noise: the judges' features need one ink blob on white; random-weight models give ~10 %."""
    _, doc = quick
    for s, per_mode in doc["pictures"].items():
        for m, recs in per_mode.items():
            for r in recs:
                assert r["background"] > 0.6, (s, m, r)
                assert r["digit"] in [str(d) for d in range(10)] and r["colour"] in ("black", "red", "green", "blue")
            assert doc["sets"][s][m]["background_share_mean"] > 0.75, (s, m)


def test_cooperation_modes_change_the_picture(quick):
    """Same seed and latent batch for every mode: AMDM, composition and superposition draw other
    pictures than the base alone (the handoff and guidance may coincide on a picture, not on all)."""
    _, doc = quick
    for s, per_mode in doc["pictures"].items():
        base = [r["sha1"] for r in per_mode["base_alone"]]
        for m in ("helper_alone", "amdm", "compose", "superposition"):
            assert all(a != b for a, b in zip(base, (r["sha1"] for r in per_mode[m]))), (s, m)
        for m in ("handoff", "guidance"):
            assert base != [r["sha1"] for r in per_mode[m]], (s, m)


def test_outputs_and_provenance(quick):
    out, doc = quick
    assert (out / "table.md").read_text().count("| base alone (digit expert) |") == 3
    assert (out / "grid.png").stat().st_size > 10_000
    assert doc["command"].startswith("python -m bench.digits.run --quick")
    assert len(doc["git"]["commit"]) == 40
    host = os.environ.get("AMDM_HOST_VERSION")
    if host:
        assert doc["host"]["comfyui"] == host
    assert doc["judges_accuracy"]["position"] >= 0.95 and doc["judges_accuracy"]["digit"] >= 0.9
