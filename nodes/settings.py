"""What the Spherical Aggregate, Compose Predictions, Model Guidance, Superposition, Deviation
Optimize and Member nodes configure (plain data, no torch). Vocabularies, checks and defaults come from the core: the
FAITHFUL preset is the default of every AMDM setting."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..amdm_core import (AGGREGATION_MODES, COMPOSE_MODES, FAITHFUL, GUIDANCE_FORMS, INITIAL_NOISE_POLICIES,
                         NODE_STEP_UNITS, RANGE_UNITS, STEP_NOISE_POLICIES, SUPERPOSE_MODES, WINDOW_UNITS, Deviation,
                         check_initial_noise, check_one_of, check_span, check_step)

# Spherical Aggregate's 'strength': constant weights at every window step (the paper), or weights from a
# rate over the window's noise interval (amdm_core.rate), so the cumulative pull does not grow with steps
STRENGTH_PER_STEP, STRENGTH_PER_INTERVAL = "per step", "per noise interval"
STRENGTHS = (STRENGTH_PER_STEP, STRENGTH_PER_INTERVAL)


def _finite(name: str, value, low: float, low_open: bool = False, high: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{name}' = {value!r} is not a number") from None
    bad = not math.isfinite(v) or (v <= low if low_open else v < low) or (high is not None and v > high)
    if bad:
        span = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise ValueError(f"'{name}' = {value} must be a finite number {span}")
    return v


@dataclass(frozen=True)
class RangeSettings:
    """A member's active noise range (default: the whole run)."""
    unit: str = "percent"
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self):
        check_one_of("range_unit", self.unit, RANGE_UNITS)
        check_span(self.unit, float(self.start), float(self.end), "range")

    @property
    def everywhere(self) -> bool:
        return self.unit == "percent" and self.start <= 0 and self.end >= 1


@dataclass(frozen=True)
class ComposeSettings:
    """Compose Predictions: combine the active members' predictions at one shared state."""
    mode: str = "composable"
    window_unit: str = "percent"
    window_start: float = 0.0
    window_end: float = 1.0

    def __post_init__(self):
        check_one_of("mode", self.mode, COMPOSE_MODES)
        check_one_of("window_unit", self.window_unit, WINDOW_UNITS)
        check_span(self.window_unit, float(self.window_start), float(self.window_end), "window")


@dataclass(frozen=True)
class GuidanceSettings:
    """Model Guidance (autoguidance): the base is the strong model, the one helper the weak one; one
    shared trajectory, the guided prediction inside the window, the base alone (own CFG) outside."""
    form: str = "autoguidance_cfg"
    w: float = 2.0
    window_unit: str = "percent"
    window_start: float = 0.0
    window_end: float = 1.0

    def __post_init__(self):
        check_one_of("form", self.form, GUIDANCE_FORMS)
        _finite("w", self.w, 0.0)
        check_one_of("window_unit", self.window_unit, WINDOW_UNITS)
        check_span(self.window_unit, float(self.window_start), float(self.window_end), "window")


@dataclass(frozen=True)
class SuperposeSettings:
    """Superposition (SuperDiff OR / AND) over the whole run, with the core's own reverse-SDE stepper."""
    mode: str = "or"
    temperature: float = 1.0

    def __post_init__(self):
        check_one_of("mode", self.mode, SUPERPOSE_MODES)
        _finite("temperature", self.temperature, 0.0)
        if self.mode == "and" and float(self.temperature) != 1.0:
            raise ValueError(f"'temperature' = {self.temperature} applies to mode 'or' only; AND has no "
                             f"temperature: set it to 1")


@dataclass(frozen=True)
class AggregationSettings:
    mode: str = FAITHFUL.mode
    window_unit: str = "percent"
    window_start: float = 0.0
    window_end: float = 0.2
    initial_noise: str = FAITHFUL.initial_noise
    step_noise: str = FAITHFUL.step_noise
    normalize_weights: bool = FAITHFUL.normalize_weights
    strength: str = STRENGTH_PER_STEP       # appended: "per noise interval" = step-count-invariant weights
    retained_share: float = 0.5             # per noise interval: the base's retained share over the window

    def __post_init__(self):
        check_one_of("mode", self.mode, AGGREGATION_MODES)
        check_one_of("strength", self.strength, STRENGTHS)
        _finite("retained_share", self.retained_share, 0.0, low_open=True, high=1.0)
        check_one_of("window_unit", self.window_unit, WINDOW_UNITS)
        check_one_of("initial_noise", self.initial_noise, INITIAL_NOISE_POLICIES)
        check_one_of("step_noise", self.step_noise, STEP_NOISE_POLICIES)
        check_span(self.window_unit, float(self.window_start), float(self.window_end), "window")
        check_initial_noise(self.mode, self.initial_noise)


@dataclass(frozen=True)
class DeviationSettings:
    step: float = FAITHFUL.deviation.step[0] if isinstance(FAITHFUL.deviation.step, (list, tuple)) \
        else FAITHFUL.deviation.step
    helper_step: float = step
    mode: str = FAITHFUL.deviation.mode
    target: str = FAITHFUL.deviation.target
    members: str = FAITHFUL.deviation.members
    step_unit: str = FAITHFUL.deviation.scale      # the core's Deviation.scale (amdm_core.units.step_length)

    def __post_init__(self):
        check_one_of("step_unit", self.step_unit, NODE_STEP_UNITS)
        for name in ("step", "helper_step"):          # named as the node's inputs
            check_step(name, getattr(self, name), self.mode)
        self.to_core(2)                               # the core's Deviation validates the rest

    def to_core(self, n_members: int) -> Deviation:
        return Deviation(step=[self.step] + [self.helper_step] * (n_members - 1), mode=self.mode,
                         target=self.target, members=self.members, scale=self.step_unit)
