"""AMDM quality benchmark on the toy ecosystem, through the real ComfyUI host and the pack's nodes.

  .cache/venv/bin/python -m bench.quality.run --quick [--out DIR]   # < 90 s; used by the test suite
  .cache/venv/bin/python -m bench.quality.run --full                 # the README numbers (~15-20 min, 1 CPU thread)

Loads the committed weights (bench/quality/weights: models A/B/C and the aspect classifiers),
wraps the models as ComfyUI MODELs (ecosystem.py), runs every method of the registry below on
target sets, classifies the samples and writes results.json, table.md, plots and sample grids to
the output folder (default bench/results/quality/ for --full, bench/results/quality/quick/ for
--quick), each stamped with the exact command and `git rev-parse HEAD`.

Target sets (data.py explains the ecosystem's class -> home-quadrant bias):
  agree     digit c in its home quadrant     (model A's own bias agrees with model B)
  conflict  digit c in the opposite quadrant (A pulls toward home, B toward the target)
  three     conflict targets + checker style (three aspects, three members A, B, C)
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.git_state import git_state

from .comfy_env import REPO_ROOT, import_pack
from .data import ASPECTS, CanvasSet, home, target_name
from .stats import newcombe_diff, rate

from .specs import MODES, SET_ASPECTS, TARGET_SETS, Mode, Spec, amdm_params, build_specs


# -- running --------------------------------------------------------------------------------------

@dataclass
class Evaluator:
    clf: object
    heldout: torch.Tensor          # [M, 256]

    def __call__(self, samples: torch.Tensor, target: dict) -> dict:
        x = samples.float().clamp(-1, 1)
        out = self.clf(x)
        ok = {a: (out[a][0] == target[a]) for a in target}
        joint = torch.stack(list(ok.values())).all(0)
        conf = torch.stack([out[a][1] for a in ASPECTS]).mean(0)
        d = torch.cdist(x.flatten(1), self.heldout).min(1).values / math.sqrt(x[0].numel())
        return {"ok": {a: v.tolist() for a, v in ok.items()}, "joint": joint.tolist(), "conf": conf.tolist(),
                "nn": d.tolist(), "pred": {a: out[a][0].tolist() for a in ASPECTS}}


def counters(ctx):
    from .ecosystem import counter
    seen, out = set(), []
    for m in ctx.models.values():
        c = counter(m)
        if id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def run_spec(ctx, spec: Spec, mode: Mode, evaluator, log, keep_samples: dict):
    from . import methods
    fn = getattr(methods, spec.fn)
    rec = {"name": spec.name, "group": spec.group, "method": spec.fn, "params": spec.params, "steps": spec.steps,
           "sets": {}}
    for set_name in spec.sets:
        targets = TARGET_SETS[set_name][:mode.targets_per_set]
        aspects = SET_ASPECTS[set_name]
        per_target, res_all = [], {"joint": [], "conf": [], "nn": [], **{a: [] for a in aspects}}
        secs = evals = rows = nonfinite = 0
        detail = None
        for ti, target in enumerate(targets):
            seed = 1000 + 17 * ti + (0 if set_name != "three" else 500)
            for c in counters(ctx):
                c.reset()
            t0 = time.perf_counter()
            out = fn(ctx, target, mode.samples, seed, spec.steps, **spec.params)
            dt = time.perf_counter() - t0
            secs += dt
            evals += out.evaluations
            rows += sum(c.rows for c in counters(ctx))
            nonfinite += int((~torch.isfinite(out.samples)).flatten(1).any(1).sum())
            detail = out.detail
            r = evaluator(out.samples, target)
            for a in aspects:
                res_all[a] += r["ok"][a]
            res_all["joint"] += r["joint"]
            res_all["conf"] += r["conf"]
            res_all["nn"] += r["nn"]
            per_target.append({"target": target, "name": target_name(target), "seed": seed,
                               "joint": rate(sum(r["joint"]), len(r["joint"])),
                               **{a: rate(sum(r["ok"][a]), len(r["ok"][a])) for a in aspects},
                               "evaluations": out.evaluations})
            if spec.key:
                keep_samples.setdefault(spec.name, {}).setdefault(set_name, []).append(
                    out.samples[:8].clamp(-1, 1).cpu())
        n = len(res_all["joint"])
        runs = len(targets)
        rec["sets"][set_name] = {
            "status": "ok", "targets": per_target, "n": n,
            "joint": rate(sum(res_all["joint"]), n),
            **{a: rate(sum(res_all[a]), n) for a in aspects},
            "quality": {"classifier_confidence": round(sum(res_all["conf"]) / n, 4),
                        "nn_rms_distance": round(sum(res_all["nn"]) / n, 4),
                        "nonfinite_samples": nonfinite},
            "compute": {"evaluations_per_run": round(evals / runs, 2),
                        "network_rows_per_sample": round(rows / n, 2),
                        "ms_per_sample": round(1000 * secs / n, 3), "seconds": round(secs, 3),
                        "batch": mode.samples},
            "detail": detail,
        }
        s = rec["sets"][set_name]
        log(f"  {spec.name} [{set_name}]: joint {s['joint']['rate']:.3f} "
            + " ".join(f"{a} {s[a]['rate']:.2f}" for a in aspects)
            + f" | {s['compute']['evaluations_per_run']:g} evals, {s['compute']['network_rows_per_sample']:g} rows/sample, "
              f"{s['compute']['ms_per_sample']:.1f} ms/sample")
    return rec


def overhead_vs_k(ctx, mode: Mode, log):
    """Evaluations and wall time of AMDM (faithful, steps 1-3) for K = 1..5 members; K = 1 is the
    stock KSampler. Extra members beyond A, B, C are second loads of B and C."""
    from . import methods
    from .ecosystem import as_comfy_model, load_net
    extra = {"B2": "B", "C2": "C"}
    for name, src in extra.items():
        if name not in ctx.models:
            ctx.models[name] = as_comfy_model(load_net(Path(ctx.weights_dir) / f"model_{src}.safetensors"))
    target = TARGET_SETS["three"][0]
    order = ["A", "B", "C", "B2", "C2"]
    times = {K: [] for K in mode.overhead_k}
    evals = {}
    for rep in range(mode.overhead_repeats):      # interleaved, so load changes hit every K alike
        for K in mode.overhead_k:
            t0 = time.perf_counter()
            if K == 1:
                r = methods.single(ctx, target, mode.overhead_batch, 7 + rep, mode.steps, model="A")
            else:
                w = [0.5] + [math.sqrt(0.75 / (K - 1))] * (K - 1)
                r = methods.amdm(ctx, target, mode.overhead_batch, 7 + rep, mode.steps,
                                 **amdm_params(models=order[:K], weights=w))
            times[K].append(time.perf_counter() - t0)
            evals[K] = r.evaluations
    out = []
    for K in mode.overhead_k:
        t = min(times[K])
        out.append({"K": K, "evaluations_per_run": evals[K], "expected": mode.steps + (K - 1) * 4,
                    "seconds_per_run": round(t, 4), "seconds_all_repeats": [round(v, 4) for v in times[K]],
                    "ms_per_sample": round(1000 * t / mode.overhead_batch, 3),
                    "batch": mode.overhead_batch, "steps": mode.steps, "window_steps": [1, 3]})
        log(f"  K={K}: {evals[K]} evaluations, {1000 * t / mode.overhead_batch:.2f} ms/sample (min of "
            f"{len(times[K])})")
    base = out[0]["seconds_per_run"]
    for o in out:
        o["time_ratio_vs_K1"] = round(o["seconds_per_run"] / base, 3)
    for name in extra:
        ctx.models.pop(name, None)
    return out


def merge_restores_models(ctx):
    """Sanity check of the host's weight patching: single A before and after a ModelMergeSimple run
    must be identical (the merge patches A's weights in place while it runs)."""
    from . import methods
    t = TARGET_SETS["conflict"][0]
    a1 = methods.single(ctx, t, 4, 99, 6, model="A").samples
    methods.merge(ctx, t, 4, 99, 6, models=["A", "B"])
    a2 = methods.single(ctx, t, 4, 99, 6, model="A").samples
    return float((a1 - a2).abs().max())


def git_info():
    return dict(git_state(REPO_ROOT), bench_digest=bench_digest())


def bench_digest() -> str:
    """sha256 over bench/quality/*.py and the weights, so results can be matched to the code that
    produced them even when they were run from an uncommitted tree."""
    import hashlib
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for f in sorted(list(here.glob("*.py")) + list((here / "weights").glob("*"))):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def reference_rows(evaluator):
    """What real held-out canvases score on the same metrics (the ceiling of the quality proxy)."""
    test = CanvasSet("clf_test")
    train = CanvasSet("clf_train")
    out = evaluator.clf(test.x)
    acc = {a: round(float((out[a][0] == test.labels[:, i]).float().mean()), 4) for i, a in enumerate(ASPECTS)}
    conf = float(torch.stack([out[a][1] for a in ASPECTS]).mean())
    d = torch.cdist(train.x.flatten(1)[:2000], test.x.flatten(1)).min(1).values / 16.0
    return {"classifier_heldout_accuracy": acc, "real_classifier_confidence": round(conf, 4),
            "real_nn_rms_distance": round(float(d.mean()), 4),
            "chance": {"class": 0.1, "position": 0.25, "style": 0.5}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--quick", action="store_true")
    g.add_argument("--full", action="store_true")
    g.add_argument("--modes", action="store_true",
                   help="the cooperation modes beside AMDM (model guidance, superposition, step-count-invariant "
                        "AMDM): results_modes.json + table_modes.md")
    ap.add_argument("--out", default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--samples", type=int, default=None, help="override samples per target and method")
    ap.add_argument("--only", default=None, help="substring filter on method names (debugging)")
    ap.add_argument("--groups", default=None, help="comma-separated spec groups to run instead of the mode's "
                                                    "(e.g. invariance_calibration)")
    ap.add_argument("--targets", type=int, default=None, help="override targets per set")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true",
                    help="with --modes --groups: replace only the rows of the groups run in the existing "
                         "results_modes.json (others kept), then rewrite table_modes.md from the merged rows")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    mode = MODES["quick" if args.quick else ("modes" if args.modes else "full")]
    if args.samples:
        mode.samples = args.samples
    if args.targets:
        mode.targets_per_set = args.targets
    if args.groups:
        mode.groups = tuple(args.groups.split(","))
    out_dir = Path(args.out) if args.out else REPO_ROOT / "bench" / "results" / "quality" / (
        "quick" if args.quick else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "_modes" if args.modes else ""
    logf = open(out_dir / f"run{suffix}.log", "a" if args.merge else "w")   # a merge run adds to the log

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    logging.getLogger().setLevel(logging.WARNING)
    pack = import_pack()
    import comfy.utils
    import nodes
    comfy.utils.PROGRESS_BAR_ENABLED = False
    logging.getLogger().setLevel(logging.WARNING)
    from . import ecosystem
    from .classifiers import Classifiers
    from .methods import Context
    weights = Path(args.weights) if args.weights else ecosystem.WEIGHTS_DIR
    ctx = Context(models=ecosystem.load_ecosystem(weights), pack=pack, nodes=nodes, weights_dir=weights)
    clf = Classifiers.load(weights)
    evaluator = Evaluator(clf, CanvasSet("clf_test").x.flatten(1))
    t_setup = time.perf_counter() - t_start
    command = "python -m bench.quality.run " + " ".join(argv if argv is not None else sys.argv[1:])
    log(f"{command}  (setup {t_setup:.1f} s)")
    specs = build_specs(mode)
    if args.only:
        specs = [s for s in specs if args.only in s.name]
    if any("base" in (s.params.get("strong"), s.params.get("weak")) for s in specs):
        # the unconditional model every finetune started from (the weak model of weak-to-strong guidance)
        ctx.models["base"] = ecosystem.as_comfy_model(ecosystem.load_net(weights / "base.safetensors"))
    results, keep = [], {}
    current = None
    for spec in specs:
        if spec.group != current:
            current = spec.group
            log(f"[{current}]")
        results.append(run_spec(ctx, spec, mode, evaluator, log, keep))
    overhead = []
    if mode.overhead_k:
        log("[overhead vs K]")
        overhead = overhead_vs_k(ctx, mode, log)
    merge_check = merge_restores_models(ctx)
    log(f"merge sanity: max |single A before - after a merge run| = {merge_check:g}")
    ref = reference_rows(evaluator)
    prov = json.loads((weights / "provenance.json").read_text()) if (weights / "provenance.json").is_file() else {}
    clf_info = json.loads((weights / "classifiers.json").read_text()) if (weights / "classifiers.json").is_file() else {}
    total = time.perf_counter() - t_start
    doc = {
        "command": command,
        "git": git_info(),
        "mode": mode.__dict__,
        "host": {"comfyui": _comfy_version(), "torch": torch.__version__, "python": platform.python_version(),
                 "machine": platform.machine(), "cpu_threads": torch.get_num_threads(),
                 "cpus": os.cpu_count()},
        "settings": {"sampler": ctx.sampler, "scheduler": ctx.scheduler, "cfg": ctx.cfg,
                     "targets": {k: [dict(t, name=target_name(t), home_of_class=home(t["class"])) for t in v]
                                 for k, v in TARGET_SETS.items()}},
        "reference": ref,
        "classifiers": clf_info,
        "training": {k: prov.get(k) for k in ("command", "seed", "architecture", "bias", "data")},
        "methods": results,
        "overhead_vs_k": overhead,
        "merge_sanity_max_abs_diff": merge_check,
        "verdicts": verdicts(results),
        "timing": {"setup_seconds": round(t_setup, 1), "total_seconds": round(total, 1),
                   "load_average_start": [round(v, 2) for v in load_start],
                   "load_average_end": [round(v, 2) for v in os.getloadavg()]},
    }
    timing = doc["timing"]                 # this run's (a merge keeps the earlier run's own timing)
    if args.merge:
        doc = merge_rows(out_dir / f"results{suffix}.json", doc)
    (out_dir / f"results{suffix}.json").write_text(json.dumps(doc, indent=1) + "\n")
    if args.modes:
        from .report import write_modes_report
        write_modes_report(doc, keep, out_dir)
    else:
        from .report import write_report
        write_report(doc, keep, out_dir)
    total = time.perf_counter() - t_start
    timing["total_seconds"] = round(total, 1)
    (out_dir / f"results{suffix}.json").write_text(json.dumps(doc, indent=1) + "\n")
    log(f"done in {total:.1f} s -> {out_dir}")
    return doc


def merge_rows(path: Path, new: dict) -> dict:
    """The existing results with the rows of the groups just run replaced by the new rows (in place of the
    first old row of those groups, else appended); the run's command, git and timing are recorded under
    "merged_runs". No existing file: the new results."""
    if not path.is_file():
        return new
    old = json.loads(path.read_text())
    groups = {m["group"] for m in new["methods"]}
    rows, placed = [], False
    for m in old["methods"]:
        if m["group"] in groups:
            if not placed:
                rows += new["methods"]
                placed = True
            continue
        rows.append(m)
    if not placed:
        rows += new["methods"]
    old["methods"] = rows
    old["verdicts"] = verdicts(rows)
    old.setdefault("merged_runs", []).append({k: new[k] for k in ("command", "git", "host", "timing")}
                                             | {"groups": sorted(groups)})
    return old


def _comfy_version():
    try:
        import comfyui_version
        return comfyui_version.__version__
    except Exception:
        return "?"


HEADLINE = "AMDM faithful, steps 1-3"


def verdicts(results):
    """AMDM (headline configuration and the best AMDM row of the main groups) against every other
    method on the same target set: joint success difference with Newcombe's 95 % interval;
    win / tie / loss by whether the interval excludes 0."""
    out = []
    rows = {}
    for r in results:
        for s, v in r["sets"].items():
            if v.get("status") == "ok":
                rows.setdefault((r["group"], s), []).append((r["name"], v))
    for (group, s), items in rows.items():
        if group.startswith("ablation"):
            continue
        amdm_rows = [(n, v) for n, v in items if n.startswith("AMDM")]
        if not amdm_rows:
            continue
        head = [(n, v) for n, v in amdm_rows if n.startswith(HEADLINE.split(",")[0]) and "steps 1-3" in n
                and "base B" not in n and "no deviation" not in n and "K=2" not in n]
        head = head[:1] or amdm_rows[:1]
        best = max(amdm_rows, key=lambda nv: nv[1]["joint"]["rate"])
        for label, (an, av) in (("headline", head[0]), ("best AMDM row (selected on these data)", best)):
            for bn, bv in items:
                if bn.startswith("AMDM"):
                    continue
                d, lo, hi = newcombe_diff(av["joint"]["k"], av["joint"]["n"], bv["joint"]["k"], bv["joint"]["n"])
                out.append({"group": group, "set": s, "which": label, "amdm": an, "baseline": bn,
                            "amdm_joint": av["joint"]["rate"], "baseline_joint": bv["joint"]["rate"],
                            "diff": round(d, 4), "ci95": [round(lo, 4), round(hi, 4)],
                            "verdict": "win" if lo > 0 else ("loss" if hi < 0 else "tie"),
                            "amdm_evals": av["compute"]["evaluations_per_run"],
                            "baseline_evals": bv["compute"]["evaluations_per_run"]})
    return out


if __name__ == "__main__":
    main()
