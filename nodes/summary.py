"""The run summary shown on the node (UI text), returned as a STRING, and logged."""
from __future__ import annotations

import json


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
        "operator": "compose" if guider.composing else "amdm",
        "aggregation": guider.aggregation.mode,
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
    }


def summary_text(s: dict) -> str:
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
    for m in s["members"]:
        tag = " [base]" if m["base"] else ""
        lines.append(f"  {m['label']}{tag}: weight {m['weight']:g} (normalized {m['normalized_weight']}), "
                     f"cfg {m['cfg']:g}, {m['evaluations']} evaluations")
    for label in s["switched_off"]:
        lines.append(f"  {label}: weight 0, not loaded or evaluated")
    lines.append(f"  total {s['total_evaluations']} model evaluations in {s['seconds']:.2f} s")
    return "\n".join(lines)


def summary_json(s: dict) -> str:
    return json.dumps(s, sort_keys=True)
