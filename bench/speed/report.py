"""table.md and the plots of bench/speed/run.py, from results.json alone (no torch, no ComfyUI).

`python bench/speed/run.py --replot DIR` calls write_all on DIR/results.json.
"""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("amdm.bench")

GOAL = 1.03
MB = 1e6


def _r(stats, digits=3):
    if not stats:
        return "–"
    if stats["n"] > 1:
        return f"**{stats['median']:.{digits}f}** [{stats['q1']:.{digits}f}–{stats['q3']:.{digits}f}]"
    return f"**{stats['median']:.{digits}f}**"


def _calls(entry):
    c = entry["unet_calls"]
    return " / ".join(",".join(str(v) for v in c[n]) for n in ("mms", "separate", "single") if n in c)


def _window(entry):
    ws = entry.get("summary_window_steps")
    if entry["group"] == "free":
        return "none (helpers weight 0)"
    return f"1–{entry['window_end']}" + ("" if ws == [1, entry["window_end"]] else f" (summary: {ws})")


def _device_title(results):
    d = results["device"]
    return f"{d['name']} ({d['type']})"


def _wall(e):
    if e.get("clock", "wall") == "wall":
        return ""
    return (" | " + " / ".join(f"{e[k]['median']:.3f}" for k in ("wall_ratio_vs_separate", "wall_ratio_vs_single")
                               if e.get(k)))


def overhead_table(rows, clock):
    wall_h = "" if clock == "wall" else " | wall-time ratios: separate / single"
    head = ("| K | N | aggregated steps | evaluations N+(K−1)(e+1) | MMS summary total | UNet calls MMS / separate / "
            f"single | evaluations / N | median {clock} s: MMS / separate / single | **MMS / separate** | "
            f"**MMS / single**{wall_h} |\n"
            "|---|---|---|---|---|---|---|---|---|---|" + ("" if clock == "wall" else "---|") + "\n")
    lines = []
    for e in rows:
        med = e["median_seconds"]
        secs = " / ".join(f"{med[n]:.3g}" for n in ("mms", "separate", "single") if n in med)
        lines.append(f"| {e['K']} | {e['steps']} | {_window(e)} | {e['expected_evaluations']} | "
                     f"{e['summary_total_evaluations']} | {_calls(e)} | {e['expected_evaluations'] / e['steps']:.2f} | "
                     f"{secs} | {_r(e.get('ratio_vs_separate'))} | {_r(e.get('ratio_vs_single'))}{_wall(e)} |")
    return head + "\n".join(lines) + "\n"


def free_table(rows, clock):
    wall_h = "" if clock == "wall" else " wall-time ratio |"
    head = ("| K (helpers at weight 0) | N | evaluations | MMS summary total | UNet calls MMS / stock | "
            f"median {clock} s: MMS / stock | **MMS / stock KSampler (N steps)** |{wall_h}\n"
            "|---|---|---|---|---|---|---|" + ("" if clock == "wall" else "---|") + "\n")
    lines = []
    for e in rows:
        c = e["unet_calls"]
        lines.append(f"| {e['K']} | {e['steps']} | {e['expected_evaluations']} | {e['summary_total_evaluations']} | "
                     f"{','.join(map(str, c['mms']))} / {','.join(map(str, c['single']))} | "
                     f"{e['median_seconds']['mms']:.3g} / {e['median_seconds']['single']:.3g} | "
                     f"{_r(e.get('ratio_vs_single'))}{_wall(e)} |")
    return head + "\n".join(lines) + "\n"


def _unique(rows):
    """Configurations once each (the window sweep repeats the K sweep's K=window_k entry)."""
    seen, out = set(), []
    for e in rows:
        key = (e["K"], e["steps"], e["window_end"], e["helper_weight"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _quartiles(vals):
    vals = sorted(vals)
    if len(vals) < 2:
        return vals[0], vals[0], vals[0]

    def q(p):
        x = p * (len(vals) - 1)
        i = int(x)
        return vals[i] + (vals[min(i + 1, len(vals) - 1)] - vals[i]) * (x - i)
    return q(0.25), q(0.5), q(0.75)


def pooled(results) -> dict:
    """Every per-repeat ratio of every configuration with helpers on (each configuration once):
    one overall answer, much tighter than any single configuration's median."""
    rows = [e for e in _unique(results["overhead"]) if e["group"] != "free"]
    out = {}
    for key in ("ratio_vs_separate", "ratio_vs_single", "wall_ratio_vs_separate", "wall_ratio_vs_single",
                "extra_outside_ms_per_eval_vs_separate", "extra_outside_ms_per_eval_vs_single"):
        vals = [v for e in rows for v in (e.get(key) or {}).get("all", [])]
        if vals:
            q1, med, q3 = _quartiles(vals)
            out[key] = {"median": med, "q1": q1, "q3": q3, "n": len(vals), "configurations": len(rows)}
    return out


def pooled_lines(results) -> str:
    p = pooled(results)
    clock = (results.get("clock") or {}).get("name", "wall")
    if "ratio_vs_single" not in p:
        return "(no configuration with helpers on)\n"

    def fmt(st, digits=3, sign=""):
        sep = " … " if sign else "–"
        return (f"**{st['median']:{sign}.{digits}f}** [{st['q1']:{sign}.{digits}f}{sep}{st['q3']:{sign}.{digits}f}] "
                f"(n = {st['n']} per-repeat values from {st['configurations']} configurations)")
    lines = [f"| pooled over every configuration with helpers on | {clock} time | median [q1–q3] |", "|---|---|---|"]
    for key, label in (("ratio_vs_separate", "MMS / separate"), ("ratio_vs_single", "MMS / single")):
        if key in p:
            lines.append(f"| {label} | {clock} | {fmt(p[key])} |")
    if clock != "wall":
        for key, label in (("wall_ratio_vs_separate", "MMS / separate"), ("wall_ratio_vs_single", "MMS / single")):
            if key in p:
                lines.append(f"| {label} | wall | {fmt(p[key])} |")
    for key, label in (("extra_outside_ms_per_eval_vs_separate", "MMS extra ms per evaluation outside the UNet, "
                                                                 "vs separate"),
                       ("extra_outside_ms_per_eval_vs_single", "MMS extra ms per evaluation outside the UNet, "
                                                               "vs single")):
        if key in p:
            lines.append(f"| {label} | cpu | {fmt(p[key], 2, '+')} |")
    return "\n".join(lines) + "\n"


def orchestration_table(rows):
    rows = [e for e in rows if e.get("outside_unet_ms_per_eval")]
    if not rows:
        return "(not measured: CPU only)\n"
    head = ("| configuration | evaluations | outside-UNet ms per evaluation: MMS / separate / single | "
            "**MMS extra ms per evaluation vs separate** | vs single |\n|---|---|---|---|---|\n")
    lines = []
    seen = set()
    for e in rows:
        key = (e["K"], e["steps"], e["window_end"], e["helper_weight"])
        if key in seen:
            continue
        seen.add(key)
        conf = (f"K={e['K']}, helpers off" if e["group"] == "free" else f"K={e['K']}, e={e['window_end']}")
        o = e["outside_unet_ms_per_eval"]
        vals = " / ".join(f"{o[n]:.2f}" for n in ("mms", "separate", "single") if n in o)

        def cell(key, e=e):
            st = e.get(key)
            if not st:
                return "–"
            return (f"**{st['median']:+.2f}** [{st['q1']:+.2f}…{st['q3']:+.2f}]" if st["n"] > 1
                    else f"**{st['median']:+.2f}**")
        lines.append(f"| {conf}, N={e['steps']} | {e['expected_evaluations']} | {vals} | "
                     f"{cell('extra_outside_ms_per_eval_vs_separate')} | "
                     f"{cell('extra_outside_ms_per_eval_vs_single')} |")
    return head + "\n".join(lines) + "\n"


def math_table(rows):
    if not rows:
        return "(skipped)\n"
    ks = sorted({en["K"] for r in rows for en in r["entries"]})
    head = ("| latent (batch 1) | one UNet forward | mode | " + " | ".join(f"K={k}" for k in ks) + " |\n"
            "|---|---|---|" + "---|" * len(ks) + "\n")
    lines = []
    for r in rows:
        lat = "×".join(str(v) for v in r["latent"])
        for mode in ("spherical", "slerp"):
            cells = []
            for k in ks:
                en = next((x for x in r["entries"] if x["mode"] == mode and x["K"] == k), None)
                cells.append("–" if en is None else f"**{en['ratio_vs_forward']:.2e}** ({en['seconds'] * 1e3:.3g} ms)")
            lines.append(f"| {lat} | {r['forward']['seconds'] * 1e3:.4g} ms ({r['forward']['dtype']}) | {mode} | "
                         + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def _math_check_line(rows) -> str:
    checks = [en.get("matches_amdm_sample") for r in rows for en in r["entries"]]
    if not checks or any(c is None for c in checks):
        return "(This run did not record the check against amdm_sample.)"
    if all(checks):
        return "Each timed step was checked bit-identical to amdm_sample's own step on the same states."
    return "**The timed step differed from amdm_sample's own step in at least one configuration.**"


def memory_table(rows):
    if not rows:
        return "(skipped)\n"
    head = ("| K | Σ member weights (MB) | MMS peak (MB) | **MMS peak / Σ weights** | MMS working (MB) | "
            "stock separate peak (MB) | separate peak / Σ weights | stock KSampler N steps, base: working (MB) |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        m, s, one = r["mms"], r["stock_separate"], r["stock_single_N"]
        lines.append(f"| {r['K']} | {m['weights_bytes'] / MB:.1f} | {m['peak_bytes'] / MB:.1f} | "
                     f"**{r['mms_peak_vs_weights']:.3f}** | {m['working_bytes'] / MB:.1f} | "
                     f"{s['peak_bytes'] / MB:.1f} | "
                     f"{r['separate_peak_vs_weights']:.3f} | {one['working_bytes'] / MB:.1f} |")
    return head + "\n".join(lines) + "\n"


def table_md(results) -> str:
    st, mdl, git = results["settings"], results["model"], results["git"]
    dev = results["device"]
    by = {g: [e for e in results["overhead"] if e["group"] == g] for g in ("K", "window", "free")}
    dirty = git.get("modified_tracked_files")
    dirty_s = "" if not dirty else f" (with modified tracked files: {', '.join(dirty)})"
    threads = f", {dev['torch_threads']} torch thread(s) of {dev['cpu_count']} CPUs" if dev["type"] == "cpu" else ""
    la = results.get("load_average_1min") or {}
    load_s = (f"; 1-min load average {la.get('start'):.2f} at start, {la.get('end'):.2f} at end"
              if la.get("start") is not None and la.get("end") is not None else "")
    lat = "×".join(str(v) for v in st["latent"][1:])
    clock = (results.get("clock") or {}).get("name", "wall")
    clock_s = (results.get("clock") or {}).get("meaning", "wall time")
    parts = [
        f"# AMDM speed and memory: {_device_title(results)}, {results['mode']} mode\n",
        f"- command (repo root): `{results['command']}`"
        + (f", run by `{results['wrapper']}`" if results.get("wrapper") else ""),
        f"- commit: `{git['commit']}`{dirty_s}",
        f"- device: {_device_title(results)}{threads}{load_s}",
        f"- torch {results['torch']}, ComfyUI {results['comfyui']}, Python {results['python']}; {results['date_utc']}",
        f"- model: {mdl['kind']} SD1.5-format UNet (detected as {mdl['detected_as']}), {mdl['parameters'] / 1e6:.1f} M "
        f"parameters, {mdl['dtype']}, {mdl['weight_bytes_per_member'] / MB:.1f} MB per member, random weights",
        f"- runs: latent {lat} (batch 1), cfg {st['cfg']}, {st['sampler']}/{st['scheduler']}, seed {st['seed']}; "
        f"{st['aggregation']}; {st['deviation']}; {st['weights']}; {st['progress_bars']}",
        f"- {st['repeats']} repeat(s) per configuration (requested {st['repeats_requested']}), variants in rotating "
        f"order; a ratio is the median of the per-repeat ratios, [q1–q3] when there are several; whole run "
        f"{results['elapsed_seconds']:.0f} s",
        "",
        f"Every ratio below is measured side by side in this one run; clock: {clock_s}"
        + ("" if clock == "wall" else " (wall-time ratios alongside)") + "; absolute times are for orientation only.",
        "",
        "## Overhead against stock KSampler, the same number of UNet evaluations",
        "",
        "K members, N steps, aggregation at steps 1..e, so every helper runs steps 0..e: N + (K−1)(e+1) evaluations "
        "(checked: the node summary's `total_evaluations` and the UNet forward calls counted by a hook). "
        "*separate* = K stock KSampler runs, the base with N steps and each helper with e+1 steps (the same models, "
        "each evaluated as often as in the MMS: the primary comparison); *single* = one stock KSampler run of "
        f"N + (K−1)(e+1) steps on the base (one set-up, one model). Goal: MMS / stock ≤ {GOAL}. "
        "evaluations / N is the cost against a plain N-step KSampler.",
        "",
        f"### Scaling with K (e = {st['window_end']}, N = {st['steps']})",
        "",
        overhead_table(by["K"], clock),
        f"### Scaling with the window (K = {st['window_k']}, N = {st['steps']})",
        "",
        overhead_table(by["window"], clock),
        "### All configurations pooled",
        "",
        "A single configuration's median rests on a few repeats; pooling every per-repeat ratio of every "
        "configuration (each once; the window-free run excluded) gives the overall answer to the goal.",
        "",
        pooled_lines(results),
        "### Window-free run",
        "",
        free_table(by["free"], clock),
        "### Time outside the UNet (CPU)",
        "",
        "CPU time of each run minus the CPU time inside the members' UNet forwards (forward hooks), per "
        "evaluation: the host's and the pack's orchestration (samplers, conds, CFG, the AMDM loop and math). The "
        "UNet's large, noisy cost drops out, so this resolves what the MMS adds far more finely than the ratios "
        "above. Median over repeats, [q1…q3] of the per-repeat differences. On a device where one evaluation "
        "takes F ms, the MMS / stock ratio is then at most about 1 + extra / F.",
        "",
        orchestration_table(results["overhead"]),
        "## Aggregation + deviation math per aggregated step against one UNet forward",
        "",
        "The core's aggregation step, as `amdm_core.amdm_sample` takes it after the members' steps: the K "
        "post-step states and the base mean to VP units, aggregation (spherical or slerp), the norm ratio (one host "
        "sync on a GPU), the deviation step of the base toward its own mean, back to k-space. "
        + _math_check_line(results["math"]) + " Cells: **math / one forward** (math time). The forward is one UNet "
        "call at batch 1; an aggregated step costs K CFG forwards (batch 2), so the share of the math in a step is "
        "smaller still.",
        "",
        math_table(results["math"]),
        "## Memory against the members' weights",
        "",
        f"Method: {results.get('memory_method')}. Σ weights = Σ `patcher.model_size()` of the K members. "
        "Peak = the run's peak (CPU: the resident weights + the run's peak RSS growth; CUDA: peak allocated, "
        "weights loaded inside the run); working = peak − weights resident. "
        f"Runs as in the overhead table (N = {st['steps']}, e = {st['window_end']}).",
        "",
        memory_table(results["memory"]),
    ]
    return "\n".join(parts)


def _plot(entries, x_key, xlabel, title, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: %s not written (rerun with --replot later)", path.name)
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    xs = [e[x_key] if x_key != "window_end" else e["window_end"] for e in entries]
    for key, label, marker in (("ratio_vs_separate", "MMS / K separate stock runs", "o"),
                               ("ratio_vs_single", "MMS / one stock run, same evaluations", "s")):
        pts = [(x, e[key]) for x, e in zip(xs, entries, strict=True) if e.get(key)]
        if not pts:
            continue
        px = [p[0] for p in pts]
        med = [p[1]["median"] for p in pts]
        lo = [p[1]["median"] - p[1]["q1"] for p in pts]
        hi = [p[1]["q3"] - p[1]["median"] for p in pts]
        ax.errorbar(px, med, yerr=[lo, hi], marker=marker, capsize=3, label=label)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.axhline(GOAL, color="red", lw=0.8, ls="--", label=f"goal {GOAL}")
    ax.set_xlabel(xlabel)
    clock = entries[0].get("clock", "wall") if entries else "wall"
    ax.set_ylabel(f"{'CPU' if clock == 'cpu' else 'wall'}-time ratio (median, bars: q1–q3)")
    ax.set_xticks(xs)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_all(results, out: Path) -> list[str]:
    out = Path(out)
    (out / "table.md").write_text(table_md(results))
    written = ["table.md"]
    st, dev = results["settings"], results["device"]
    lat = "×".join(str(v) for v in st["latent"][1:])
    base = f"{dev['name']} ({dev['type']}), {results['model']['kind']} UNet, latent {lat}"
    k_rows = [e for e in results["overhead"] if e["group"] == "K"]
    w_rows = [e for e in results["overhead"] if e["group"] == "window"]
    if k_rows and _plot(k_rows, "K", "K (members)",
                        f"AMDM overhead vs K: N={st['steps']}, window 1..{st['window_end']}\n{base}",
                        out / "overhead_vs_K.png"):
        written.append("overhead_vs_K.png")
    if w_rows and _plot(w_rows, "window_end", "window end e (aggregated steps 1..e; helpers run e+1 steps)",
                        f"AMDM overhead vs window: K={st['window_k']}, N={st['steps']}\n{base}",
                        out / "overhead_vs_window.png"):
        written.append("overhead_vs_window.png")
    return written


def summary_lines(results) -> str:
    out = [f"AMDM speed ({results['mode']}, {_device_title(results)}, {results['model']['kind']}):"]
    for e in results["overhead"]:
        out.append(f"  {e['group']:<6} K={e['K']} N={e['steps']} e={e['window_end']} evals={e['expected_evaluations']}"
                   f" summary={e['summary_total_evaluations']}  MMS/separate="
                   f"{e['ratio_vs_separate']['median'] if e.get('ratio_vs_separate') else float('nan'):.3f}"
                   f"  MMS/single={e['ratio_vs_single']['median']:.3f}")
    for key, st in pooled(results).items():
        out.append(f"  pooled {key}: median {st['median']:.3f} [{st['q1']:.3f}, {st['q3']:.3f}] (n={st['n']})")
    for r in results["math"]:
        for en in r["entries"]:
            out.append(f"  math {r['latent'][0]}x{r['latent'][1]}x{r['latent'][2]} {en['mode']:<9} K={en['K']}: "
                       f"{en['ratio_vs_forward']:.2e} of one forward")
    for r in results["memory"]:
        out.append(f"  memory K={r['K']}: MMS peak / weights {r['mms_peak_vs_weights']:.3f}, "
                   f"separate {r['separate_peak_vs_weights']:.3f}")
    return "\n".join(out)
