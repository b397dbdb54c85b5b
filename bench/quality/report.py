"""table.md, plots and sample grids from the benchmark's results document."""
from __future__ import annotations

import re
from pathlib import Path


ASPECT_COLS = {"agree": ("class", "position"), "conflict": ("class", "position"),
               "three": ("class", "position", "style")}
SET_TITLES = {"agree": "digit in its home quadrant (members agree)",
              "conflict": "digit in the opposite quadrant (members pull apart)",
              "three": "three aspects: digit, opposite quadrant, checker style (three members)"}


def _pct(r):
    return f"{100 * r['rate']:.1f}"


def _ci(r):
    return f"{100 * r['rate']:.1f} [{100 * r['ci95'][0]:.0f}, {100 * r['ci95'][1]:.0f}]"


def stamp(doc) -> str:
    g = doc["git"]
    dirty = " (working tree had uncommitted changes: " + ", ".join(g["dirty_paths"][:8]) + ")" if g["dirty"] else ""
    return (f"Command: `{doc['command']}`  \nCommit: `{g['commit']}`{dirty}  \n"
            f"Host: ComfyUI {doc['host']['comfyui']}, torch {doc['host']['torch']}, {doc['host']['cpu_threads']} CPU "
            f"thread(s) of {doc['host']['cpus']}; total {doc['timing']['total_seconds']} s; load average (1 min) "
            f"{doc['timing']['load_average_start'][0]} at start, {doc['timing']['load_average_end'][0]} at end "
            f"(other work shared the CPU: wall times are indicative, evaluation counts are exact)"
            + "".join(_merged_stamp(m) for m in doc.get("merged_runs", [])))


def _merged_stamp(m) -> str:
    """A later run that replaced the rows of some groups (run.py --merge)."""
    g = m["git"]
    dirty = " (uncommitted: " + ", ".join(g["dirty_paths"][:8]) + ")" if g["dirty"] else ""
    return (f"  \nRows of {', '.join(m['groups'])} re-run by `{m['command']}` at commit `{g['commit']}`{dirty}; "
            f"total {m['timing']['total_seconds']} s")


def method_table(doc, group, set_name):
    cols = ASPECT_COLS[set_name]
    lines = ["| method | joint success % [95% CI] | " + " | ".join(f"{c} %" for c in cols)
             + " | confidence | NN dist | evals/run | ms/sample |",
             "|---|---|" + "---|" * len(cols) + "---|---|---|---|"]
    na = []
    for r in doc["methods"]:
        if r["group"] != group or set_name not in r["sets"]:
            continue
        s = r["sets"][set_name]
        if s.get("status") != "ok":
            na.append(f"{r['name']}: {s.get('status')} ({s.get('reason', '')})")
            continue
        name = f"**{r['name']}**" if r["name"].startswith("AMDM") else r["name"]
        lines.append(f"| {name} | {_ci(s['joint'])} | " + " | ".join(_pct(s[c]) for c in cols)
                     + f" | {s['quality']['classifier_confidence']:.3f} | {s['quality']['nn_rms_distance']:.3f}"
                     f" | {s['compute']['evaluations_per_run']:g} | {s['compute']['ms_per_sample']:.1f} |")
    if len(lines) == 2:
        return ""
    if na:
        lines.append("")
        lines += [f"- {x}" for x in na]
    return "\n".join(lines) + "\n"


def verdict_table(doc, which="headline"):
    v = [x for x in doc["verdicts"] if x["which"] == which]
    if not v:
        return ""
    lines = ["| group | set | AMDM row | baseline | AMDM % | baseline % | diff (pp) [95% CI] | verdict | evals AMDM / baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in v:
        lines.append(f"| {x['group']} | {x['set']} | {x['amdm']} | {x['baseline']} | {100 * x['amdm_joint']:.1f} | "
                     f"{100 * x['baseline_joint']:.1f} | {100 * x['diff']:+.1f} [{100 * x['ci95'][0]:+.0f}, "
                     f"{100 * x['ci95'][1]:+.0f}] | {x['verdict']} | {x['amdm_evals']:g} / {x['baseline_evals']:g} |")
    counts = {k: sum(1 for x in v if x["verdict"] == k) for k in ("win", "tie", "loss")}
    lines.append("")
    lines.append(f"Totals ({which}): {counts['win']} wins, {counts['tie']} ties, {counts['loss']} losses.")
    return "\n".join(lines) + "\n"


def write_table(doc, out: Path):
    ref = doc["reference"]
    parts = ["# AMDM quality benchmark (toy ecosystem)", "", stamp(doc), ""]
    parts.append(f"Sampler `{doc['settings']['sampler']}`, scheduler `{doc['settings']['scheduler']}`, cfg "
                 f"{doc['settings']['cfg']} for every member, {doc['mode']['samples']} samples per target and method "
                 f"({doc['mode']['targets_per_set']} target(s) per set; the same seeds for every method).")
    parts.append("")
    parts.append("Aspect classifiers, held-out accuracy: " + ", ".join(
        f"{a} {100 * v:.1f} %" for a, v in ref["classifier_heldout_accuracy"].items())
        + f". Real held-out canvases: mean classifier confidence {ref['real_classifier_confidence']:.3f}, "
          f"NN distance to other real canvases {ref['real_nn_rms_distance']:.3f} (RMS per pixel, range [-1, 1]). "
          "Chance: class 10 %, position 25 %, style 50 %.")
    parts.append("")
    parts.append("Columns: joint = every aspect of the target right (Wilson 95 % CI); confidence = mean max-softmax "
                 "of the three classifiers (quality proxy, higher is better); NN dist = RMS distance to the nearest "
                 "held-out real canvas (lower is better); evals/run = model evaluations (one CFG-guided member "
                 "step, cond+uncond batched) per sampling run, independent of batch size; ms/sample = wall time per "
                 "sample at the batch size used.")
    parts.append("")
    groups = []
    for r in doc["methods"]:
        if r["group"] not in groups:
            groups.append(r["group"])
    for group in groups:
        for set_name in ("agree", "conflict", "three"):
            t = method_table(doc, group, set_name)
            if t:
                parts += [f"## {group}: {SET_TITLES[set_name]}", "", t]
    if doc["overhead_vs_k"]:
        parts += ["## Compute vs number of members K (AMDM faithful, window steps 1-3)", "",
                  "| K | evaluations/run | expected N + (K-1)(e+1) | ms/sample | time vs K=1 |", "|---|---|---|---|---|"]
        for o in doc["overhead_vs_k"]:
            parts.append(f"| {o['K']} | {o['evaluations_per_run']} | {o['expected']} | {o['ms_per_sample']:.2f} | "
                         f"{o['time_ratio_vs_K1']:.2f} |")
        parts.append("")
    for which in ("headline", "best AMDM row (selected on these data)"):
        t = verdict_table(doc, which)
        if t:
            parts += [f"## AMDM vs baselines: {which}", "", t]
    parts.append(f"Merge sanity check (stock weight patching): max |single A before - after a merge run| = "
                 f"{doc['merge_sanity_max_abs_diff']:g}.")
    (out / "table.md").write_text("\n".join(parts) + "\n")


def write_plots(doc, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_group = {}
    for r in doc["methods"]:
        by_group.setdefault(r["group"], []).append(r)

    def panel(ax, group, xkey, xlabel, set_name="conflict"):
        rows = [r for r in by_group.get(group, []) if r["sets"].get(set_name, {}).get("status") == "ok"]
        if not rows:
            ax.set_visible(False)
            return
        xs = [xkey(r) for r in rows]
        for metric, style in (("joint", "o-"), ("class", "s--"), ("position", "^--")):
            ys = [100 * r["sets"][set_name][metric]["rate"] for r in rows]
            lo = [100 * (r["sets"][set_name][metric]["rate"] - r["sets"][set_name][metric]["ci95"][0]) for r in rows]
            hi = [100 * (r["sets"][set_name][metric]["ci95"][1] - r["sets"][set_name][metric]["rate"]) for r in rows]
            ax.errorbar(xs, ys, yerr=[lo, hi] if metric == "joint" else None, fmt=style, capsize=3, label=metric)
        for r in doc["methods"]:       # reference lines from the main group
            if r["group"] == "main" and r["sets"].get(set_name, {}).get("status") == "ok":
                if r["name"].startswith("single A"):
                    ax.axhline(100 * r["sets"][set_name]["joint"]["rate"], color="gray", ls=":", lw=1,
                               label="single A joint")
                if r["name"].startswith("compose A+B composable, whole"):
                    ax.axhline(100 * r["sets"][set_name]["joint"]["rate"], color="green", ls=":", lw=1,
                               label="composable joint")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"success % ({set_name} targets)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    steps_of = lambda r: r["params"]["end"]
    start_of = lambda r: r["params"]["start"]
    fig, axs = plt.subplots(1, 2, figsize=(10, 4))
    panel(axs[0], "ablation: window length", steps_of, "window end step (window starts at step 1)")
    panel(axs[1], "ablation: window position", start_of, "window start step (3-step window)")
    fig.suptitle("AMDM faithful (base A class, helper B position): success vs window")
    fig.tight_layout()
    fig.savefig(out / "success_vs_window.png", dpi=90)
    plt.close(fig)

    fig, axs = plt.subplots(1, 2, figsize=(10, 4))
    panel(axs[0], "ablation: weight", lambda r: r["params"]["weights"][0], "base weight omega (helper sqrt(1-omega^2))")
    panel(axs[1], "ablation: deviation step", lambda r: r["params"]["dev_step"], "deviation step (per sqrt n; 0 = off)")
    fig.suptitle("AMDM faithful, window steps 1-3: success vs weight and vs deviation step")
    fig.tight_layout()
    fig.savefig(out / "success_vs_weight_deviation.png", dpi=90)
    plt.close(fig)

    probes = (("stage probe: B->A", "conflict", "position", "position (B first, then A)"),
              ("stage probe: A->B", "conflict", "class", "class (A first, then B)"),
              ("stage probe: C->A", "three", "style", "style (C first, then A)"))
    if any(by_group.get(g) for g, *_ in probes):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for g, set_name, aspect, label in probes:
            rows = [r for r in by_group.get(g, []) if r["sets"].get(set_name, {}).get("status") == "ok"]
            if not rows:
                continue
            xs = [r["params"]["percents"][0] for r in rows]
            ys = [100 * r["sets"][set_name][aspect]["rate"] for r in rows]
            lo = [100 * (r["sets"][set_name][aspect]["rate"] - r["sets"][set_name][aspect]["ci95"][0]) for r in rows]
            hi = [100 * (r["sets"][set_name][aspect]["ci95"][1] - r["sets"][set_name][aspect]["rate"]) for r in rows]
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label=label)
        ax.axvspan(0.0, 0.2, color="red", alpha=0.08, label="AMDM default window (0-0.2)")
        ax.set_xlabel("handoff point (percent of the noise range; 0 = pure noise)")
        ax.set_ylabel("first model's aspect kept, %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("When is each aspect decided? (stock KSamplerAdvanced handoff)", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "aspect_decision_stage.png", dpi=90)
        plt.close(fig)

    ov = doc["overhead_vs_k"]
    if ov:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
        ks = [o["K"] for o in ov]
        ax[0].plot(ks, [o["evaluations_per_run"] for o in ov], "o-", label="measured")
        ax[0].plot(ks, [o["expected"] for o in ov], "x--", label="N + (K-1)(e+1)")
        ax[0].set_xlabel("members K")
        ax[0].set_ylabel("model evaluations per run")
        ax[0].legend()
        ax[1].plot(ks, [o["time_ratio_vs_K1"] for o in ov], "o-")
        ax[1].set_xlabel("members K")
        ax[1].set_ylabel("wall time vs K=1 (stock KSampler)")
        for a in ax:
            a.grid(alpha=0.3)
        fig.suptitle(f"AMDM overhead vs K ({ov[0]['steps']} steps, window steps 1-3)")
        fig.tight_layout()
        fig.savefig(out / "overhead_vs_k.png", dpi=90)
        plt.close(fig)

    # bar chart of the main comparison
    for set_name in ("agree", "conflict", "three"):
        rows = [r for r in doc["methods"] if r["group"] in ("main", "three")
                and r["sets"].get(set_name, {}).get("status") == "ok"]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1.2))
        names = [r["name"] for r in rows]
        ys = [100 * r["sets"][set_name]["joint"]["rate"] for r in rows]
        err = [[100 * (r["sets"][set_name]["joint"]["rate"] - r["sets"][set_name]["joint"]["ci95"][0]) for r in rows],
               [100 * (r["sets"][set_name]["joint"]["ci95"][1] - r["sets"][set_name]["joint"]["rate"]) for r in rows]]
        colors = ["tab:red" if n.startswith("AMDM") else "tab:blue" for n in names]
        ax.barh(range(len(rows)), ys, xerr=err, color=colors, capsize=2)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_xlabel("joint success % (95% CI)")
        ax.set_title(SET_TITLES[set_name])
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"methods_{set_name}.png", dpi=90, bbox_inches="tight")
        plt.close(fig)


def write_grids(doc, keep: dict, out: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gdir = out / "grids"
    gdir.mkdir(exist_ok=True)
    for old in gdir.glob("*.png"):
        old.unlink()
    for name, sets in keep.items():
        rows, labels = [], []
        for set_name, batches in sets.items():
            for t, b in zip(doc["settings"]["targets"][set_name], batches):
                rows.append(b)
                labels.append(f"{set_name}: {t['name']}")
        if not rows:
            continue
        ncol = max(b.shape[0] for b in rows)
        fig, axs = plt.subplots(len(rows), ncol, figsize=(0.9 * ncol + 2.2, 0.95 * len(rows) + 0.5), squeeze=False)
        for i, b in enumerate(rows):
            for j in range(ncol):
                ax = axs[i][j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < b.shape[0]:
                    ax.imshow(b[j, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            axs[i][0].set_ylabel(labels[i], rotation=0, ha="right", va="center", fontsize=7)
        fig.suptitle(name, fontsize=9)
        fig.tight_layout()
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        fig.savefig(gdir / f"{slug}.png", dpi=70)
        plt.close(fig)


def write_report(doc, keep, out: Path):
    write_table(doc, out)
    write_plots(doc, out)
    write_grids(doc, keep, out)


# -- the cooperation modes beside AMDM (python -m bench.quality.run --modes) ---------------------------

def _cost(s):
    c = s["compute"]
    return (f"{c['evaluations_per_run']:g} | {c['network_rows_per_sample']:g} | "
            f"{c['network_rows_per_sample'] / 2:g}")


def _modes_rows(doc, group, set_name, extra=None):
    cols = ASPECT_COLS[set_name]
    head = ("| method | n | joint % [95% CI] | " + " | ".join(f"{c} %" for c in cols)
            + " | confidence | NN dist | node evals/run | forward passes/sample | CFG-step equiv. | ms/sample |"
            + (" " + " | ".join(extra[0]) + " |" if extra else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["methods"]:
        if r["group"] != group or r["sets"].get(set_name, {}).get("status") != "ok":
            continue
        s = r["sets"][set_name]
        lines.append(f"| {r['name']} | {s['n']} | {_ci(s['joint'])} | " + " | ".join(_pct(s[c]) for c in cols)
                     + f" | {s['quality']['classifier_confidence']:.3f} | {s['quality']['nn_rms_distance']:.3f} | "
                     + _cost(s) + f" | {s['compute']['ms_per_sample']:.1f} |"
                     + (" " + " | ".join(extra[1](r, s)) + " |" if extra else ""))
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def _superpose_extra():
    def f(r, s):
        p = s["detail"]["superposition"]
        gap = p.get("max_log_density_gap")
        return [", ".join(f"{v:.2f}" for v in p["kappa_mean"]), "" if gap is None or p["mode"] != "and" else f"{gap:.2g}"]
    return (["mean kappa per member", "AND: max log-density gap"], f)


def invariance_table(doc, group="invariance"):
    """Rows: configuration; columns: scheduler x steps; cells: joint % (n), window steps, evaluations."""
    cells, configs, cols = {}, [], []
    for r in doc["methods"]:
        if r["group"] != group or r["sets"].get("conflict", {}).get("status") != "ok":
            continue
        s = r["sets"]["conflict"]
        config = r["name"].rsplit(" [", 1)[0]
        col = (r["params"].get("scheduler") or doc["settings"]["scheduler"], r["steps"])
        if config not in configs:
            configs.append(config)
        if col not in cols:
            cols.append(col)
        cells[config, col] = s
    if not cells:
        return ""
    lines = ["| configuration | " + " | ".join(f"{sch} {n}" for sch, n in cols) + " | spread (max - min), pp |",
             "|---|" + "---|" * len(cols) + "---|"]
    for config in configs:
        vals, out = [], []
        for col in cols:
            s = cells.get((config, col))
            if s is None:
                out.append("")
                continue
            vals.append(100 * s["joint"]["rate"])
            w = (s.get("detail") or {}).get("summary", {}).get("window_steps")
            share = (s.get("detail") or {}).get("retained_share")
            out.append(f"{_ci(s['joint'])}; pos {_pct(s['position'])}, class {_pct(s['class'])}; "
                       f"win {w[0]}-{w[1] if w else ''}" if w else f"{_ci(s['joint'])}; no window")
            out[-1] += f"; kept {share:.2f}" if share is not None else ""
            out[-1] += f"; {s['compute']['evaluations_per_run']:g} ev"
        spread = f"{max(vals) - min(vals):.1f}" if vals else ""
        lines.append(f"| {config} | " + " | ".join(out) + f" | {spread} |")
    return "\n".join(lines) + "\n"


def write_modes_report(doc, keep, out: Path):
    parts = ["# Cooperation modes beside AMDM (toy ecosystem)", "", stamp(doc), ""]
    n = doc["mode"]["samples"] * doc["mode"]["targets_per_set"]
    parts += [f"Sampler `{doc['settings']['sampler']}` (not used by Superposition, which steps itself), cfg "
              f"{doc['settings']['cfg']} for every member, {doc['mode']['samples']} samples per target, "
              f"{doc['mode']['targets_per_set']} targets per set (n = {n} per cell), the same seeds per target for "
              f"every row and as in `results.json`. The AMDM / composition / handoff rows to compare with are in "
              f"`table.md` (64 samples per target there).", "",
              "Compute columns: node evals/run = member calls the node reports (for Model Guidance a strong call "
              "batches cond + uncond in the CFG form); forward passes/sample = network batch rows per sample, "
              "counted by the networks; CFG-step equiv. = forward passes / 2, the unit of `evals/run` in "
              "`table.md` (one CFG-guided member step = 2 passes).", ""]
    titles = {"guidance": "Model guidance (autoguidance): strong = the base member, weak = the one helper",
              "superposition": "Superposition (SuperDiff), its own reverse-SDE stepper, scheduler ddim_uniform"}
    for group, extra in (("guidance", None), ("superposition", _superpose_extra())):
        for set_name in ("agree", "conflict", "three"):
            t = _modes_rows(doc, group, set_name, extra)
            if t:
                parts += [f"## {titles[group]}: {SET_TITLES[set_name]}", "", t]
    for group, title in (("invariance: calibration", "Step-count invariance: calibration of retained_share "
                                                     "(20 ddim_uniform steps)"),
                         ("invariance", "Step-count invariance (conflict targets, base A + helper B, faithful "
                                        "deviation step)")):
        t = _modes_rows(doc, group, "conflict")
        if t:
            parts += [f"## {title}", "", t]
        if group == "invariance":
            t = invariance_table(doc)
            if t:
                parts += ["### Joint success across step counts and schedulers", "",
                          "Cells: joint % [95% CI]; position and class %; aggregated steps (win); the base's retained "
                          "share over the window as the node reports it (kept); evaluations per run (ev).", "", t]
    (out / "table_modes.md").write_text("\n".join(parts) + "\n")
    if keep:
        import shutil
        gdir = out / "grids_modes"
        if gdir.exists():
            shutil.rmtree(gdir)
        tmp = out / "_grids_tmp"
        tmp.mkdir(exist_ok=True)
        write_grids(doc, keep, tmp)
        (tmp / "grids").rename(gdir)
        tmp.rmdir()
