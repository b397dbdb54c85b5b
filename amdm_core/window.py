"""The aggregation window: which sampling steps aggregate, given in steps or by noise level.

Step j takes every member from sigmas[j] to sigmas[j+1]; "aggregation at step j" combines the
members' states after that step. Step 0 never aggregates (as in the reference code: the states
after step 0 are the first ones that exist), so the earliest aggregation is at step 1, and the
helpers are evaluated at steps 0..end.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class StepWindow:
    """Resolved window: aggregation at steps start..end inclusive (start >= 1), or empty (end < start).

    Resolved means for one run: build it with window_from_steps / window_from_sigmas, which clamp to
    the run's steps as the reference code does; amdm_sample refuses an end past the run's last step.
    """
    start: int
    end: int

    def __post_init__(self):
        for name in ("start", "end"):
            v = getattr(self, name)
            try:
                if isinstance(v, bool):
                    raise TypeError
                object.__setattr__(self, name, operator.index(v))    # numpy ints become ints
            except TypeError:
                raise ValueError(f"StepWindow {name} = {v!r} must be an int (a step index)") from None
        if self.start < 1:
            raise ValueError(f"StepWindow start = {self.start}: step 0 never aggregates (no previous prediction "
                             f"exists yet); start at 1 or use window_from_steps, which clamps")

    def check_fits(self, n_steps: int) -> None:
        """Refuse a non-empty window that ends past the last step (n_steps - 1) of this run."""
        if not self.empty and self.end > n_steps - 1:
            raise ValueError(f"window end {self.end} is past the last step {n_steps - 1} of this {n_steps}-step "
                             f"schedule; resolve the window on this run's sigmas (window_from_steps clamps)")

    @property
    def empty(self) -> bool:
        return self.end < self.start

    def __contains__(self, j: int) -> bool:
        return self.start <= j <= self.end

    @property
    def helper_steps(self) -> int:
        """Steps the helper members run: 0..end (0 when the window is empty)."""
        return 0 if self.empty else self.end + 1


EMPTY_WINDOW = StepWindow(1, 0)


def window_from_steps(start: int, end: int, n_steps: int) -> StepWindow:
    """Window by step index, as the reference code's optim_start/optim_end (inclusive)."""
    if n_steps < 1:
        raise ValueError(f"n_steps = {n_steps}; a schedule needs at least one step")
    start, end = max(1, int(start)), min(int(end), n_steps - 1)
    return StepWindow(start, end) if end >= start else EMPTY_WINDOW


def window_from_sigmas(sigma_high: float, sigma_low: float, sigmas: Sequence[float] | torch.Tensor) -> StepWindow:
    """Window by noise level: the steps j >= 1 whose starting sigma lies in [sigma_low, sigma_high].

    The same rule as ComfyUI's timestep ranges (a step belongs to the range of the sigma it
    starts from), so one setting keeps its meaning across step counts and schedulers.
    """
    if sigma_high < sigma_low:
        raise ValueError(f"window sigma_high {sigma_high} is below sigma_low {sigma_low}")
    s = [float(v) for v in sigmas]
    inside = [j for j in range(1, len(s) - 1) if sigma_low <= s[j] <= sigma_high]
    if not inside:
        return EMPTY_WINDOW
    return StepWindow(inside[0], inside[-1])
