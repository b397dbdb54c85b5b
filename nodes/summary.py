"""The run summary shown on the node (UI text), returned as a STRING, and logged."""
from __future__ import annotations

import json
import math

import torch

from ..amdm_core import guidance_evaluations, retained_share


def build_summary(guider, report, sigmas, sampler_name: str = "", scheduler: str = "") -> dict:
    """guider: the run's configuration (members, settings); report: what its last sample() did."""
    trace = report.trace
    members = [guider.members[0]] + list(guider.helpers)
    evaluations = list(trace.evaluations) if trace else [0] * len(members)
    evaluations += [0] * (len(members) - len(evaluations))
    aggregated = bool(trace and trace.aggregated_steps)
    n_steps = max(0, len(sigmas) - 1)
    return {
        "steps": n_steps,
        "sampler": sampler_name,
        "scheduler": scheduler,
        "window_steps": [trace.aggregated_steps[0], trace.aggregated_steps[-1]] if aggregated else None,
        "window_sigmas": [round(float(sigmas[trace.aggregated_steps[0]]), 4),
                          round(float(sigmas[trace.aggregated_steps[-1]]), 4)] if aggregated else None,
        "operator": guider.operator,
        "aggregation": getattr(guider.aggregation, "mode", None) or guider.aggregation.form,
        "deviation": None if guider.deviation is None else {
            "step": guider.deviation.step, "mode": guider.deviation.mode, "target": guider.deviation.target,
            "members": guider.deviation.members},
        "members": [{"label": m.label, "base": i == 0, "weight": m.weight, "cfg": m.cfg,
                     "normalized_weight": round(trace.weights[i], 4) if trace and i < len(trace.weights) else None,
                     "evaluations": evaluations[i]} for i, m in enumerate(members)],
        "switched_off": [m.label for m in guider.members[1:] if m.weight == 0],
        "total_evaluations": sum(evaluations),
        "norm_ratio": [round(r, 3) for r in trace.norm_ratio] if trace else [],
        "weight_swaps": report.weight_swaps,
        "seconds": round(report.seconds, 3),
        **_mode_details(guider, report, trace, sampler_name),
    }


def _mode_details(guider, report, trace, sampler_name) -> dict:
    """What is particular to the run's mode: the AMDM strength and the base's retained share, the model
    guidance form and its evaluations by kind, superposition's kappa and log-densities."""
    agg = guider.aggregation
    if guider.operator == "amdm":
        weights = trace.aggregated_weights if trace else []
        return {"strength": agg.strength,
                "retained_share": float(f"{retained_share(weights, agg.strength == 'per noise interval'):.6g}")
                if weights else None,
                "target_share": agg.retained_share if agg.strength == "per noise interval" else None}
    if guider.operator == "guidance":
        g = report.guidance or {}
        cfg = g.get("strong_cfg", guider.cfg if agg.form == "autoguidance_cfg" else 1.0)
        counts = g.get("counts", {"strong_cond": 0, "strong_uncond": 0, "weak_cond": 0})
        guided = len(trace.aggregated_steps) if trace else 0
        return {"guidance": {"form": agg.form, "w": agg.w, "strong_cfg": cfg,
                             "evaluations_per_step": guidance_evaluations(agg.form, agg.w, cfg),
                             "guided_steps": guided, "evaluations": counts,
                             "base_alone_evaluations": g.get("base_alone", 0)}}
    if guider.operator == "superpose":
        st = report.superpose
        if st is None or not st.steps:
            return {"superposition": {"mode": agg.mode, "temperature": agg.temperature, "steps": 0}}
        prior = torch.tensor([math.log(m.weight) for m in [guider.members[0], *guider.helpers]], dtype=torch.float64)
        # AND keeps every member's ll_k + log prior_k equal: the largest spread over samples and steps
        gaps = [float((d + prior).amax(1).sub((d + prior).amin(1)).max()) for d in st.log_density]
        return {"superposition": {
            "mode": agg.mode, "temperature": agg.temperature, "steps": st.steps,
            "stepper": "SuperDiff reverse-SDE Euler-Maruyama (amdm_core.superpose)",
            "sampler_used": False, "sampler_ignored": sampler_name,
            "log_prior": [round(float(v), 4) for v in prior],
            "kappa_last": [[round(float(v), 4) for v in row] for row in st.kappa[-1]],
            "kappa_mean": [round(float(v), 4) for v in torch.stack([k.double().mean(0) for k in st.kappa]).mean(0)],
            "log_density": [[round(float(v), 4) for v in row] for row in st.log_density[-1]],
            "max_log_density_gap": round(max(gaps), 6),
            "member_calls_per_step": len(st.evaluations),
            # conditional (+ unconditional where the member's cfg is not 1) passes per step
            "evaluations_per_step": sum(1 if math.isclose(m.cfg, 1.0) else 2
                                        for m in [guider.members[0], *guider.helpers])}}
    return {}


def summary_text(s: dict) -> str:
    if s["operator"] in ("guidance", "superpose"):
        return _cooperation_text(s)
    verb = "composed" if s["operator"] == "compose" else "aggregated"
    if s["window_steps"]:
        a, b = s["window_steps"]
        window = (f"{verb} steps {a}-{b} of {s['steps']} (sigma {s['window_sigmas'][0]:g} -> "
                  f"{s['window_sigmas'][1]:g}, {s['aggregation']})")
    else:
        helpers_ran = any(m["evaluations"] for m in s["members"][1:])
        if s["operator"] == "compose" and helpers_ran:
            window = f"handoff in {s['steps']} steps: one member active at each evaluation"
        else:
            noun = "composition" if s["operator"] == "compose" else "aggregation"
            window = f"no {noun} in {s['steps']} steps (window empty or helpers off): base model alone"
    lines = [f"{'Compose' if s['operator'] == 'compose' else 'AMDM'}: {window}"]
    if s.get("strength") == "per noise interval" and s.get("retained_share") is not None:
        lines.append(f"  strength per noise interval: the base keeps {s['retained_share']:.4g} "
                     f"(target {s['target_share']:g}) over the window")
    lines += _member_lines(s)
    return "\n".join(lines)


def _member_lines(s: dict) -> list[str]:
    lines = []
    for m in s["members"]:
        tag = " [base]" if m["base"] else ""
        lines.append(f"  {m['label']}{tag}: weight {m['weight']:g} (normalized {m['normalized_weight']}), "
                     f"cfg {m['cfg']:g}, {m['evaluations']} evaluations")
    for label in s["switched_off"]:
        lines.append(f"  {label}: weight 0, not loaded or evaluated")
    lines.append(f"  total {s['total_evaluations']} model evaluations in {s['seconds']:.2f} s")
    return lines


def _cooperation_text(s: dict) -> str:
    if s["operator"] == "guidance":
        g = s["guidance"]
        c = g["evaluations"]
        if s["window_steps"]:
            a, b = s["window_steps"]
            where = f"guided steps {a}-{b} of {s['steps']}"
        else:
            where = f"no guided step in {s['steps']} steps (window empty): strong (base) model alone"
        lines = [f"Model Guidance ({g['form']}, w {g['w']:g}): {where}, {g['evaluations_per_step']} evaluations "
                 f"per step in the window",
                 f"  evaluations: strong cond {c['strong_cond']}, strong uncond {c['strong_uncond']}, weak cond "
                 f"{c['weak_cond']}; base alone outside the window {g['base_alone_evaluations']}"]
        for m in s["members"]:
            role = "strong, base" if m["base"] else "weak"
            cfg = f"cfg {g['strong_cfg']:g}" if m["base"] else "cfg not used"
            lines.append(f"  {m['label']} [{role}]: {cfg}, {m['evaluations']} calls")
        lines.append(f"  total {sum(c.values())} guided evaluations in {s['seconds']:.2f} s")
        return "\n".join(lines)
    p = s["superposition"]
    mode = p["mode"].upper() + (f", temperature {p['temperature']:g}" if p["mode"] == "or" else "")
    lines = [f"Superposition ({mode}): {p['steps']} SDE steps, {p.get('member_calls_per_step', 0)} members x own "
             f"CFG = {p.get('evaluations_per_step', 0)} evaluations per step"]
    if p["steps"]:
        lines.append(f"  own reverse-SDE stepper: sampler '{p['sampler_ignored']}' not used; scheduler "
                     f"'{s['scheduler']}' and steps give the sigmas")
        lines.append(f"  mean kappa {p['kappa_mean']}, final log-densities {p['log_density']}")
    for m, prior in zip(s["members"], p.get("log_prior", [None] * len(s["members"]))):
        tag = " [base]" if m["base"] else ""
        log_w = "" if prior is None else f" (log prior {prior:g})"
        lines.append(f"  {m['label']}{tag}: weight {m['weight']:g}{log_w}, cfg {m['cfg']:g}, {m['evaluations']} calls")
    lines.append(f"  total {s['total_evaluations']} member calls in {s['seconds']:.2f} s")
    return "\n".join(lines)


def summary_json(s: dict) -> str:
    return json.dumps(s, sort_keys=True)
