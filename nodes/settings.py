"""What the Spherical Aggregate and Deviation Optimize blocks configure (plain data, no torch)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..amdm_core import AGGREGATION_MODES, DEVIATION_MODES, Deviation, step_from_reference
from ..amdm_core.compose import COMPOSE_MODES
from ..amdm_core.loop import MU_TARGETS, OPTIMISED_MEMBERS, STEP_NOISE_POLICIES
from ..amdm_core.presets import INITIAL_NOISE_POLICIES

WINDOW_UNITS = ("percent", "sigma", "steps")
RANGE_UNITS = ("percent", "sigma")


def _check_span(unit: str, start: float, end: float, what: str):
    """start/end of a window or range: percent 0..1 (start <= end), sigma (start = the higher
    noise level, >= end) or step indices (start <= end)."""
    for name, v in ((f"{what}_start", start), (f"{what}_end", end)):
        if not math.isfinite(float(v)) or float(v) < 0:
            raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
        if unit == "percent" and float(v) > 1:
            raise ValueError(f"'{name}' = {v} is a percent of the noise range; use 0..1")
    if unit == "sigma" and start < end:
        raise ValueError(f"with {what}_unit 'sigma', '{what}_start' ({start}) is the higher noise level and must "
                         f"be >= '{what}_end' ({end})")
    if unit != "sigma" and start > end:
        raise ValueError(f"'{what}_start' ({start}) is after '{what}_end' ({end})")


@dataclass(frozen=True)
class RangeSettings:
    """A member's active noise range (default: the whole run)."""
    unit: str = "percent"
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self):
        _one_of("range_unit", self.unit, RANGE_UNITS)
        _check_span(self.unit, float(self.start), float(self.end), "range")

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
        _one_of("mode", self.mode, COMPOSE_MODES)
        _one_of("window_unit", self.window_unit, WINDOW_UNITS)
        _check_span(self.window_unit, float(self.window_start), float(self.window_end), "window")


@dataclass(frozen=True)
class AggregationSettings:
    mode: str = "spherical"
    window_unit: str = "percent"
    window_start: float = 0.0
    window_end: float = 0.2
    initial_noise: str = "independent"
    step_noise: str = "independent"
    normalize_weights: bool = True

    def __post_init__(self):
        _one_of("mode", self.mode, AGGREGATION_MODES)
        _one_of("window_unit", self.window_unit, WINDOW_UNITS)
        _one_of("initial_noise", self.initial_noise, INITIAL_NOISE_POLICIES)
        _one_of("step_noise", self.step_noise, STEP_NOISE_POLICIES)
        _check_span(self.window_unit, float(self.window_start), float(self.window_end), "window")
        if self.initial_noise == "shared" and self.mode == "spherical":
            raise ValueError("initial_noise 'shared' with mode 'spherical' makes the members' states nearly identical, "
                             "and the spherical sum then inflates them by the sum of the weights; use 'independent' "
                             "initial noise or mode 'slerp'")


# The core's step scales a node offers; the raw L2 scale ("absolute") is left out: steps are capped at 10.
DEVIATION_STEP_UNITS = ("per_sqrt_n", "per_sqrt_reference")


@dataclass(frozen=True)
class DeviationSettings:
    step: float = step_from_reference(45)
    helper_step: float = step_from_reference(45)
    mode: str = "absolute"
    target: str = "faithful"
    members: str = "base"
    step_unit: str = "per_sqrt_n"      # the core's Deviation.scale (see amdm_core.units.step_length)

    def __post_init__(self):
        _one_of("mode", self.mode, DEVIATION_MODES)
        _one_of("target", self.target, MU_TARGETS)
        _one_of("members", self.members, OPTIMISED_MEMBERS)
        _one_of("step_unit", self.step_unit, DEVIATION_STEP_UNITS)
        for name in ("step", "helper_step"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
            if self.mode == "relative" and v > 1:
                raise ValueError(f"'{name}' = {v}: in 'relative' mode the step is a fraction of the distance (0..1)")

    def to_core(self, n_members: int) -> Deviation:
        return Deviation(step=[self.step] + [self.helper_step] * (n_members - 1), mode=self.mode,
                         target=self.target, members=self.members, scale=self.step_unit)


def _one_of(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"'{name}' = {value!r} is not one of {list(allowed)}")
