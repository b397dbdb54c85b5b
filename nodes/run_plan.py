"""The run plan: which member is evaluated at which step, where the window is, what it costs.

A pure function of the members' settings, the run's sigmas and the base model's sampling object
(for percent -> sigma): no model is touched. The guider runs by it, the summary reports it and the
sweep prices its configurations with it, so the three can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..amdm_core import NoiseRange, StepWindow, planned_member_steps, steps_in_range
from .members import MemberError
from .settings import ComposeSettings, GuidanceSettings, SuperposeSettings
from .window import resolve_compose_window, resolve_range, resolve_window


@dataclass(frozen=True)
class RunPlan:
    composing: bool
    steps: int
    ranges: tuple                      # NoiseRange of the base, then of each evaluated helper
    window: StepWindow | None          # AMDM: the aggregation window in steps of this run
    compose_window: NoiseRange | None  # Compose Predictions: where helpers may be composed
    activity: tuple                    # per member, per step: is it active (its noise range)?
    helpers_evaluated: bool            # False: the base runs alone, exactly as a stock KSampler
    planned_member_steps: int          # member steps (= evaluations for one-evaluation samplers)
    operator: str = "amdm"             # "amdm", "compose", "guidance" or "superpose"


def plan_run(base, helpers, aggregation, sigmas, model_sampling) -> RunPlan:
    """base, helpers: Members (helpers with weight > 0 only); sigmas: this run's schedule."""
    n = max(len(sigmas) - 1, 0)
    ranges = tuple(resolve_range(m.noise_range, model_sampling) for m in [base, *helpers])
    activity = tuple(tuple(steps_in_range(r, sigmas.detach().cpu())) for r in ranges)
    if isinstance(aggregation, SuperposeSettings):
        # every member at every step, with the core's own stepper (no window)
        return RunPlan(False, n, ranges, None, None, activity, n > 0, n * (len(helpers) + 1), "superpose")
    if isinstance(aggregation, GuidanceSettings):
        return _plan_guidance(aggregation, sigmas, model_sampling, ranges, activity, n)
    if isinstance(aggregation, ComposeSettings):
        return _plan_compose(aggregation, sigmas, model_sampling, ranges, activity, n)
    window = resolve_window(aggregation, sigmas, model_sampling) if n else None
    in_window = [] if window is None or window.empty else [
        sum(a[:window.end + 1]) for a in activity[1:]]
    evaluated = any(in_window)
    return RunPlan(False, n, ranges, window, None, activity, evaluated,
                   planned_member_steps(n, in_window) if evaluated else n, "amdm")


def _plan_compose(agg, sigmas, model_sampling, ranges, activity, n) -> RunPlan:
    window = resolve_compose_window(agg, sigmas, model_sampling)
    starts = [float(v) for v in sigmas[:-1]]
    active = [[k for k, r in enumerate(ranges) if r.contains(s) and (k == 0 or window.contains(s))] for s in starts]
    for j, (s, members) in enumerate(zip(starts, active)):
        if not members:
            raise MemberError(f"no member is active at step {j} (sigma {s:.4g}): the members' noise ranges "
                              f"must together cover the whole schedule.")
    evaluated = any(k > 0 for members in active for k in members)
    cost = sum(len(members) for members in active) if evaluated else n
    return RunPlan(True, n, ranges, None, window, activity, evaluated, cost, "compose")


def _plan_guidance(g, sigmas, model_sampling, ranges, activity, n) -> RunPlan:
    """The weak member (the one helper) is evaluated at the steps inside the guidance window and its
    own noise range; the base at every step."""
    window = resolve_compose_window(g, sigmas, model_sampling)
    starts = [float(v) for v in sigmas[:-1]]
    guided = [bool(len(ranges) > 1 and ranges[1].contains(s) and window.contains(s)) for s in starts]
    evaluated = any(guided)
    return RunPlan(True, n, ranges, None, window, activity, evaluated, n + sum(guided), "guidance")
