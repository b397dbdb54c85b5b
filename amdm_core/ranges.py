"""Member noise ranges: when a member is active, by noise level.

A range is (high, low] in sigma: a model evaluation at sigma is inside when low < sigma <= high.
The half-open end makes adjacent ranges (A until 0.5, B from 0.5) a clean handoff: at every noise
level exactly one of them is active. A range ending at 0 includes the last steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class NoiseRange:
    high: float = math.inf
    low: float = 0.0

    def __post_init__(self):
        if math.isnan(self.high) or math.isnan(self.low) or self.high < self.low or self.low < 0:
            raise ValueError(f"noise range ({self.high}, {self.low}] is invalid: need high >= low >= 0")

    def contains(self, sigma: float) -> bool:
        return self.low < float(sigma) <= self.high

    @property
    def everywhere(self) -> bool:
        return self.high == math.inf and self.low == 0.0


ALWAYS = NoiseRange()


def steps_in_range(rng: NoiseRange, sigmas: Sequence[float] | torch.Tensor) -> list[bool]:
    """Per step j: is the step's starting sigma (sigmas[j]) inside the range?"""
    s = [float(v) for v in sigmas]
    return [rng.contains(s[j]) for j in range(len(s) - 1)]
