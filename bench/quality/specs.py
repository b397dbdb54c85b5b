"""The quality benchmark's registry: target sets, run modes (quick / full) and the method specs
(which node settings each row of the table runs)."""
from __future__ import annotations

import math
from dataclasses import dataclass


TARGET_SETS = {
    "agree": [{"class": 0, "position": 0}, {"class": 3, "position": 3}, {"class": 5, "position": 1},
              {"class": 6, "position": 2}],
    "conflict": [{"class": 0, "position": 3}, {"class": 3, "position": 0}, {"class": 5, "position": 2},
                 {"class": 6, "position": 1}],
    "three": [{"class": 0, "position": 3, "style": 1}, {"class": 3, "position": 0, "style": 1},
              {"class": 5, "position": 2, "style": 1}, {"class": 6, "position": 1, "style": 1}],
}
SET_ASPECTS = {"agree": ("class", "position"), "conflict": ("class", "position"),
               "three": ("class", "position", "style")}
W2 = (0.5, 0.866)                  # the paper's omega = 0.5 on the base, sqrt(1 - 0.25) on the helper


@dataclass
class Spec:
    name: str
    group: str
    fn: str                        # a function of methods.py
    params: dict
    sets: tuple
    steps: int
    x: float | None = None         # x value in an ablation plot
    key: bool = False              # gets a sample grid


@dataclass
class Mode:
    name: str
    samples: int                   # per target and method (one batch)
    steps: int                     # the main step count
    step_variants: tuple           # few / many steps
    targets_per_set: int
    groups: tuple
    ablation_sets: tuple = ("conflict",)
    overhead_batch: int = 16
    overhead_repeats: int = 2
    overhead_k: tuple = (1, 2, 3, 4, 5)


MODES = {
    "quick": Mode("quick", samples=12, steps=10, step_variants=(), targets_per_set=1,
                  groups=("main", "three", "ablation_window_end", "modes_quick"), overhead_batch=8,
                  overhead_repeats=1,
                  overhead_k=(1, 2, 3)),
    # the cooperation modes beside AMDM (python -m bench.quality.run --modes): results_modes.json,
    # table_modes.md; 4 targets x 256 samples = 1024 per cell
    "modes": Mode("modes", samples=256, steps=20, step_variants=(), targets_per_set=4,
                  groups=("guidance", "superposition", "invariance_calibration", "invariance"), overhead_k=()),
    "full": Mode("full", samples=64, steps=20, step_variants=(10, 40), targets_per_set=4,
                 groups=("main", "steps", "three", "stage_probe", "ablation_window_end",
                         "ablation_window_start", "ablation_weight", "ablation_deviation"),
                 overhead_batch=32, overhead_repeats=5),
}


def amdm_params(**kw):
    p = dict(models=["A", "B"], weights=list(W2), mode="spherical", unit="steps", start=1, end=3)
    p.update(kw)
    return p


def reference_params(**kw):
    return amdm_params(dev_target="reference", dev_members="all", normalize=False, **kw)


def build_specs(mode: Mode) -> list[Spec]:
    N = mode.steps
    two = ("agree", "conflict")
    quick = mode.name == "quick"
    specs: list[Spec] = []

    def add(name, group, fn, params, sets=two, steps=N, x=None, key=False, quick_ok=True):
        if quick and not quick_ok:
            return
        if quick and group == "main" and fn != "single":
            sets = ("conflict",)           # quick mode: only the single models run on both sets
        specs.append(Spec(name, group, fn, params, tuple(sets), steps, x, key))

    if "main" in mode.groups:
        g = "main"
        add("single A (class)", g, "single", {"model": "A"}, key=True)
        add("single B (position)", g, "single", {"model": "B"}, key=True)
        add("merge A+B", g, "merge", {"models": ["A", "B"]}, key=True)
        add("compose A+B composable, whole run", g, "compose", {"models": ["A", "B"]}, key=True)
        add("compose A+B composable, 0-0.2", g, "compose", {"models": ["A", "B"], "end": 0.2}, quick_ok=False)
        add("compose A+B composable, 0-0.5", g, "compose", {"models": ["A", "B"], "end": 0.5}, quick_ok=False)
        add("average A+B, whole run", g, "compose", {"models": ["A", "B"], "mode": "average",
                                                     "weights": [0.5, 0.5]}, quick_ok=False)
        add("average A+B, 0-0.5", g, "compose", {"models": ["A", "B"], "mode": "average", "end": 0.5,
                                                 "weights": [0.5, 0.5]}, quick_ok=False)
        for order in (["B", "A"], ["A", "B"]):
            for p in (0.2, 0.5):
                add(f"handoff {'->'.join(order)} at 0.{int(p * 10)} (KSamplerAdvanced chain)", g, "handoff_chain",
                    {"order": order, "percents": [p]}, key=(order == ["B", "A"] and p == 0.2),
                    quick_ok=(order == ["B", "A"] and p == 0.2))
        add("handoff B->A at 0.2 (one pass, pack ranges)", g, "handoff_onepass",
            {"order": ["B", "A"], "percents": [0.2]})
        add("AMDM faithful, steps 1-3", g, "amdm", amdm_params(), key=True)
        add("AMDM faithful, percent 0-0.2", g, "amdm", amdm_params(unit="percent", start=0.0, end=0.2),
            quick_ok=False)
        add("AMDM faithful, percent 0-0.5", g, "amdm", amdm_params(unit="percent", start=0.0, end=0.5),
            quick_ok=False)
        add("AMDM reference-compatible, steps 1-3", g, "amdm", reference_params(), key=True)
        add("AMDM slerp, steps 1-3", g, "amdm", amdm_params(mode="slerp"), key=True)
        add("AMDM slerp shared noise, steps 1-3", g, "amdm", amdm_params(mode="slerp", initial_noise="shared"),
            quick_ok=False)
        add("AMDM faithful, base B + helper A, steps 1-3", g, "amdm",
            amdm_params(models=["B", "A"]), quick_ok=False)
        add("AMDM faithful, no deviation step, steps 1-3", g, "amdm", amdm_params(dev_step=0.0), quick_ok=False)

    for n in mode.step_variants if "steps" in mode.groups else ():
        g = f"steps {n}"
        add(f"single A (class) [{n} steps]", g, "single", {"model": "A"}, steps=n, sets=("conflict",))
        add(f"single B (position) [{n} steps]", g, "single", {"model": "B"}, steps=n, sets=("conflict",))
        add(f"merge A+B [{n} steps]", g, "merge", {"models": ["A", "B"]}, steps=n, sets=("conflict",))
        add(f"compose A+B composable, whole run [{n} steps]", g, "compose", {"models": ["A", "B"]}, steps=n, sets=("conflict",))
        add(f"handoff B->A at 0.2 (KSamplerAdvanced chain) [{n} steps]", g, "handoff_chain",
            {"order": ["B", "A"], "percents": [0.2]}, steps=n, sets=("conflict",))
        add(f"AMDM faithful, steps 1-3 [{n} steps]", g, "amdm", amdm_params(), steps=n, sets=("conflict",))
        add(f"AMDM faithful, percent 0-0.2 [{n} steps]", g, "amdm",
            amdm_params(unit="percent", start=0.0, end=0.2), steps=n, sets=("conflict",))

    if "three" in mode.groups:
        g, s3 = "three", ("three",)
        add("single A (class)", g, "single", {"model": "A"}, sets=s3, quick_ok=False)
        add("single B (position)", g, "single", {"model": "B"}, sets=s3, quick_ok=False)
        add("single C (style)", g, "single", {"model": "C"}, sets=s3)
        add("merge A+B+C", g, "merge", {"models": ["A", "B", "C"]}, sets=s3)
        add("compose A+B+C composable, whole run", g, "compose", {"models": ["A", "B", "C"]}, sets=s3, key=True)
        add("average A+B+C, whole run", g, "compose", {"models": ["A", "B", "C"], "mode": "average",
                                                       "weights": [1 / 3] * 3}, sets=s3, quick_ok=False)
        for order in (["B", "A", "C"], ["B", "C", "A"], ["A", "B", "C"], ["A", "C", "B"], ["C", "A", "B"],
                      ["C", "B", "A"]):
            add(f"handoff {'->'.join(order)} at 0.2/0.6 (KSamplerAdvanced chain)", g, "handoff_chain",
                {"order": order, "percents": [0.2, 0.6]}, sets=s3, key=(order == ["B", "A", "C"]),
                quick_ok=(order == ["B", "A", "C"]))
        add("handoff B->A->C at 0.2/0.6 (one pass, pack ranges)", g, "handoff_onepass",
            {"order": ["B", "A", "C"], "percents": [0.2, 0.6]}, sets=s3, quick_ok=False)
        w3 = list(_nested3())
        add("AMDM faithful A+B+C, steps 1-3", g, "amdm", amdm_params(models=["A", "B", "C"], weights=w3), sets=s3,
            key=True)
        add("AMDM reference-compatible A+B+C, steps 1-3 (repo 3-model weights)", g, "amdm",
            reference_params(models=["A", "B", "C"], weights=[0.47 * 0.5, math.sqrt(1 - 0.47 ** 2) * 0.5,
                                                              math.sqrt(1 - 0.47 ** 2) * math.sqrt(1 - 0.25)]),
            sets=s3)
        add("AMDM slerp A+B+C, steps 1-3", g, "amdm", amdm_params(models=["A", "B", "C"], weights=w3, mode="slerp"),
            sets=s3, quick_ok=False)
        add("AMDM faithful A+B (K=2), steps 1-3", g, "amdm", amdm_params(), sets=s3, quick_ok=False)
        add("AMDM faithful A+B+C, percent 0-0.5", g, "amdm",
            amdm_params(models=["A", "B", "C"], weights=w3, unit="percent", start=0.0, end=0.5), sets=s3,
            quick_ok=False)
        add("AMDM faithful A+B+C, B early (0-0.2) + C late (0.5-1), window steps 1-(N-1)", g, "amdm",
            amdm_params(models=["A", "B", "C"], weights=w3, unit="steps", start=1, end=N - 1,
                        ranges=[[0.0, 0.2], [0.5, 1.0]]), sets=s3, quick_ok=False)
        add("AMDM faithful A+C (K=2), steps 1-3", g, "amdm", amdm_params(models=["A", "C"]), sets=s3,
            quick_ok=False)
        add("AMDM faithful A+C (K=2), percent 0.5-0.9", g, "amdm",
            amdm_params(models=["A", "C"], unit="percent", start=0.5, end=0.9), sets=s3, quick_ok=False)

    if "modes_quick" in mode.groups:
        # one row of each new mode, so the quick test covers them (evaluation counts, finite results)
        add("guidance strong A, weak base, autoguidance_cfg w 2", "guidance", "guidance",
            dict(strong="A", weak="base", form="autoguidance_cfg", w=2.0), sets=("conflict",))
        add("guidance strong A, weak base, autoguidance w 2", "guidance", "guidance",
            dict(strong="A", weak="base", form="autoguidance", w=2.0), sets=("conflict",))
        add("superposition AND A+B", "superposition", "superpose", dict(models=["A", "B"], mode="and"),
            sets=("conflict",))
        add(f"AMDM faithful, per noise interval (share {RETAINED_SHARE:g}), percent 0.2-0.4", "invariance", "amdm",
            amdm_params(unit="percent", start=0.2, end=0.4, strength="per noise interval",
                        retained_share=RETAINED_SHARE), sets=("conflict",))
    if "guidance" in mode.groups:
        g = "guidance"
        for strong in ("A", "B"):
            for form in ("autoguidance", "autoguidance_cfg"):
                for w in ((2.0, 3.0) if strong == "A" else (2.0,)):
                    add(f"guidance strong {strong}, weak base, {form} w {w:g}", g, "guidance",
                        dict(strong=strong, weak="base", form=form, w=w), key=(strong == "A" and w == 2.0))
        # a pair of finetunes: A strong, B "weak" (it knows another aspect, not less of A's): w < 1 moves
        # toward B's prediction (an interpolation), w > 1 away from it
        for form, w in (("autoguidance_cfg", 0.5), ("autoguidance", 0.5), ("autoguidance_cfg", 2.0)):
            add(f"guidance strong A, weak B, {form} w {w:g}", g, "guidance", dict(strong="A", weak="B", form=form, w=w),
                key=(w == 0.5 and form == "autoguidance_cfg"))
        add("guidance strong B, weak A, autoguidance_cfg w 0.5", g, "guidance",
            dict(strong="B", weak="A", form="autoguidance_cfg", w=0.5))
    if "superposition" in mode.groups:
        g = "superposition"
        for n in (10, 20, 50, 100):
            for m in ("or", "and"):
                add(f"superposition {m.upper()} A+B [{n} steps]", g, "superpose", dict(models=["A", "B"], mode=m),
                    steps=n, key=(n == 50))
        add("superposition AND A+B+C [20 steps]", g, "superpose", dict(models=["A", "B", "C"], mode="and"),
            sets=("three",), steps=20)
        for m in ("and", "or"):
            add(f"superposition {m.upper()} A+B+C [50 steps]", g, "superpose", dict(models=["A", "B", "C"], mode=m),
                sets=("three",), steps=50, key=(m == "and"))
    if "invariance_calibration" in mode.groups:
        add_invariance(add, calibration=True)
    if "invariance" in mode.groups:
        add_invariance(add)

    if "stage_probe" in mode.groups:
        # When is each aspect decided? Model X runs the high-noise part, Y finishes (stock chain);
        # the fraction of X's aspect that survives vs the handoff point.
        for first, then, set_name in (("B", "A", "conflict"), ("A", "B", "conflict"), ("C", "A", "three")):
            for p in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
                add(f"probe {first}->{then} at {p}", f"stage probe: {first}->{then}", "handoff_chain",
                    {"order": [first, then], "percents": [p]}, sets=(set_name,), x=p)

    aset = mode.ablation_sets
    if "ablation_window_end" in mode.groups:
        ends = (1, 2) if quick else (1, 2, 3, 5, 8, 12, N - 1)
        for e in ends:
            add(f"AMDM faithful, steps 1-{e}", "ablation: window length", "amdm", amdm_params(end=e), sets=aset, x=e)
    if "ablation_window_start" in mode.groups:
        for s in (1, 4, 7, 10, 13, 16):
            add(f"AMDM faithful, steps {s}-{s + 2}", "ablation: window position", "amdm",
                amdm_params(start=s, end=s + 2), sets=aset, x=s)
    if "ablation_weight" in mode.groups:
        for w in (0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
            h = round(math.sqrt(max(0.0, 1 - w * w)), 4)
            add(f"AMDM faithful, base weight {w} (helper {h:g})", "ablation: weight", "amdm",
                amdm_params(weights=[w, h]), sets=aset, x=w)
    if "ablation_deviation" in mode.groups:
        for st in (0.0, 0.1, 0.2, 0.3516, 0.5, 0.8):
            add(f"AMDM faithful, deviation step {st}", "ablation: deviation step", "amdm",
                amdm_params(dev_step=st), sets=aset, x=st)
    return specs


INVARIANCE_STEPS = (10, 20, 50)
INVARIANCE_SCHEDULERS = ("ddim_uniform", "karras", "normal")
INTERVAL_WINDOW = (0.2, 0.4)        # percent of the noise range: sigma 5.09 -> 2.28 (below every grid's sigmas[1])
RETAINED_SHARE = 0.22               # calibrated at 20 ddim_uniform steps against the reference window (steps 1-3)
CALIBRATION_SHARES = (0.2, 0.22, 0.25, 0.3)


def add_invariance(add, calibration=False):
    """Step-count invariance (conflict targets, A base + B helper): the default per-step weights with the
    reference window (steps 1-3) and with a noise-level window, against strength "per noise interval"
    over the same noise-level window, at 10 / 20 / 50 steps x two schedulers."""
    g, c = "invariance", ("conflict",)
    lo, hi = INTERVAL_WINDOW
    if calibration:
        for share in CALIBRATION_SHARES:
            add(f"AMDM faithful, per noise interval (share {share:g}), percent {lo:g}-{hi:g} [20 steps, ddim_uniform]",
                "invariance: calibration", "amdm",
                amdm_params(unit="percent", start=lo, end=hi, strength="per noise interval", retained_share=share,
                            scheduler="ddim_uniform"), sets=c, steps=20, x=share)
        return
    for sched in INVARIANCE_SCHEDULERS:
        for n in INVARIANCE_STEPS:
            tag = f"[{n} steps, {sched}]"
            add(f"AMDM faithful, per step, steps 1-3 {tag}", g, "amdm", amdm_params(scheduler=sched), sets=c, steps=n,
                x=n)
            add(f"AMDM faithful, per step, percent {lo:g}-{hi:g} {tag}", g, "amdm",
                amdm_params(unit="percent", start=lo, end=hi, scheduler=sched), sets=c, steps=n, x=n)
            add(f"AMDM faithful, per noise interval (share {RETAINED_SHARE:g}), percent {lo:g}-{hi:g} {tag}", g, "amdm",
                amdm_params(unit="percent", start=lo, end=hi, strength="per noise interval",
                            retained_share=RETAINED_SHARE, scheduler=sched), sets=c, steps=n, x=n)
            # diagnostics: the same without the deviation step (the aggregation's own grid dependence; with
            # it, each step's deviation is scaled to the step's share of the pull), and the shipped default
            # window percent 0-0.2 (its top is clipped to the grid's sigmas[1], which differs between grids)
            add(f"AMDM faithful, per noise interval (share {RETAINED_SHARE:g}), percent {lo:g}-{hi:g}, deviation "
                f"step off {tag}", g, "amdm",
                amdm_params(unit="percent", start=lo, end=hi, strength="per noise interval",
                            retained_share=RETAINED_SHARE, scheduler=sched, dev_step=0.0), sets=c, steps=n, x=n)
            add(f"AMDM faithful, per noise interval (share {RETAINED_SHARE:g}), percent 0-0.2 {tag}", g, "amdm",
                amdm_params(unit="percent", start=0.0, end=0.2, strength="per noise interval",
                            retained_share=RETAINED_SHARE, scheduler=sched), sets=c, steps=n, x=n)


def _nested3():
    from .methods import nested3
    return nested3(0.5)
