"""What the Spherical Aggregate and Deviation Optimize blocks configure (plain data, no torch)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..amdm_core import AGGREGATION_MODES, DEVIATION_MODES, Deviation, step_from_reference
from ..amdm_core.loop import MU_TARGETS, OPTIMISED_MEMBERS, STEP_NOISE_POLICIES
from ..amdm_core.presets import INITIAL_NOISE_POLICIES

WINDOW_UNITS = ("percent", "sigma", "steps")


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
        for name in ("window_start", "window_end"):
            v = getattr(self, name)
            if not math.isfinite(float(v)) or float(v) < 0:
                raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
        if self.window_unit == "percent":
            for name in ("window_start", "window_end"):
                if float(getattr(self, name)) > 1:
                    raise ValueError(f"'{name}' = {getattr(self, name)} is a percent of the noise range; use 0..1")
        if self.window_unit == "sigma" and self.window_start < self.window_end:
            raise ValueError(f"with window_unit 'sigma', 'window_start' ({self.window_start}) is the higher noise "
                             f"level and must be >= 'window_end' ({self.window_end})")
        if self.window_unit != "sigma" and self.window_start > self.window_end:
            raise ValueError(f"'window_start' ({self.window_start}) is after 'window_end' ({self.window_end})")
        if self.initial_noise == "shared" and self.mode == "spherical":
            raise ValueError("initial_noise 'shared' with mode 'spherical' makes the members' states nearly identical, "
                             "and the spherical sum then inflates them by the sum of the weights; use 'independent' "
                             "initial noise or mode 'slerp'")


@dataclass(frozen=True)
class DeviationSettings:
    step: float = step_from_reference(45)
    helper_step: float = step_from_reference(45)
    mode: str = "absolute"
    target: str = "faithful"
    members: str = "base"

    def __post_init__(self):
        _one_of("mode", self.mode, DEVIATION_MODES)
        _one_of("target", self.target, MU_TARGETS)
        _one_of("members", self.members, OPTIMISED_MEMBERS)
        for name in ("step", "helper_step"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"'{name}' = {v} must be a finite number >= 0")
            if self.mode == "relative" and v > 1:
                raise ValueError(f"'{name}' = {v}: in 'relative' mode the step is a fraction of the distance (0..1)")

    def to_core(self, n_members: int) -> Deviation:
        return Deviation(step=[self.step] + [self.helper_step] * (n_members - 1), mode=self.mode,
                         target=self.target, members=self.members)


def _one_of(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"'{name}' = {value!r} is not one of {list(allowed)}")
