"""Member weights for spherical aggregation: unit L2 norm (sum of squares 1), not sum 1."""
from __future__ import annotations

import math
from typing import Sequence


def _as_floats(values: Sequence[float], what: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{what}[{i}] = {v!r} is not a number") from None
        if not math.isfinite(f):
            raise ValueError(f"{what}[{i}] = {f} is not finite; use a finite number")
        out.append(f)
    return out


def spherical_weights(raw: Sequence[float]) -> list[float]:
    """Scale non-negative per-member weights to unit L2 norm (sum of squares 1).

    Member 0 is the specified (base) model. A zero weight means "this member does not
    contribute"; the aggregate of members with weights w is sum_k w_k * x_k.
    """
    w = _as_floats(raw, "weights")
    if not w:
        raise ValueError("weights is empty; give one weight per member")
    for i, v in enumerate(w):
        if v < 0:
            raise ValueError(f"weights[{i}] = {v} is negative; weights must be >= 0")
    top = max(w)
    if top == 0.0:
        raise ValueError("all weights are zero; give at least one member a positive weight")
    w = [v / top for v in w]              # divide by the largest first: tiny weights must not underflow
    norm = math.sqrt(sum(v * v for v in w))
    return [v / norm for v in w]


def nested_weights(omegas: Sequence[float]) -> list[float]:
    """The paper/reference nested form: K-1 values omega in [0, 1] -> K weights, sum of squares 1.

    agg_1 = x_1; agg_k = omega_{k-1} * agg_{k-1} + sqrt(1 - omega_{k-1}^2) * x_k.
    K=2 gives [omega, sqrt(1 - omega^2)] (omega multiplies the specified model, as in the code).
    """
    om = _as_floats(omegas, "omegas")
    for i, v in enumerate(om):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"omegas[{i}] = {v} is outside [0, 1]")
    w = [1.0]
    for o in om:
        w = [wi * o for wi in w] + [math.sqrt(max(0.0, 1.0 - o * o))]
    return w


def reference_three_member_weights(omega1: float, omega2: float) -> list[float]:
    """The reference code's 3-model weights (interactmigcip.py), which do NOT have sum of squares 1.

    Sum of squares is 1 - omega1^2 (1 - omega2^2); kept only for reproducing that code.
    """
    o1, o2 = _as_floats([omega1, omega2], "omegas")
    a = math.sqrt(max(0.0, 1.0 - o1 * o1))
    b = math.sqrt(max(0.0, 1.0 - o2 * o2))
    return [o1 * o2, a * o2, a * b]


def omegas_from_weights(weights: Sequence[float]) -> list[float]:
    """Inverse of nested_weights for weights with sum of squares 1 (the slerp mode needs omegas).

    omega_k is the ratio of the prefix norms r_k / r_{k+1}; an all-zero prefix gives omega 0.
    """
    w = _as_floats(weights, "weights")
    omegas = []
    prefix = w[0] * w[0]
    for v in w[1:]:
        nxt = prefix + v * v
        omegas.append(math.sqrt(prefix / nxt) if nxt > 0 else 1.0)
        prefix = nxt
    return omegas
