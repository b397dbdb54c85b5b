import math

import pytest
from hypothesis import given, settings, strategies as st

from amdm_core import (nested_weights, omegas_from_weights, reference_three_member_weights,
                       spherical_weights)


@settings(deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=7))
def test_nested_weights_unit_norm_and_non_negative(omegas):
    w = nested_weights(omegas)
    assert len(w) == len(omegas) + 1
    assert all(v >= 0 for v in w)
    assert sum(v * v for v in w) == pytest.approx(1.0, abs=1e-7)


def test_nested_weights_two_members_is_the_paper_formula():
    assert nested_weights([0.5]) == pytest.approx([0.5, math.sqrt(0.75)], abs=1e-15)
    assert nested_weights([1.0]) == [1.0, 0.0]


def test_reference_three_member_weights_document_the_norm_deficit():
    w = reference_three_member_weights(0.47, 0.5)
    assert w == pytest.approx([0.235, 0.441333, 0.764412], abs=1e-5)
    assert sum(v * v for v in w) == pytest.approx(1 - 0.47 ** 2 * (1 - 0.5 ** 2), abs=1e-12)
    assert sum(v * v for v in w) == pytest.approx(0.834325, abs=1e-6)
    # the norm-preserving nested form differs only in the last weight
    assert nested_weights([0.47, 0.5])[2] == pytest.approx(0.8660254, abs=1e-6)


def test_weights_do_not_sum_to_one():
    w = nested_weights([0.5])
    assert 1.0 < sum(w) <= math.sqrt(2) + 1e-12


@settings(deadline=None)
@given(st.lists(st.floats(0.0, 1e6), min_size=1, max_size=8).filter(lambda v: any(x > 0 for x in v)))
def test_spherical_weights_unit_norm_keep_ratios(raw):
    w = spherical_weights(raw)
    assert sum(v * v for v in w) == pytest.approx(1.0, abs=1e-9)
    k = max(range(len(raw)), key=lambda i: raw[i])
    for i, r in enumerate(raw):
        assert w[i] == pytest.approx(r / raw[k] * w[k], rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("raw, message", [
    ([0.0, 0.0], "all weights are zero"),
    ([1.0, -0.5], "weights[1] = -0.5 is negative"),
    ([1.0, float("nan")], "weights[1] = nan is not finite"),
    ([float("inf")], "weights[0] = inf is not finite"),
    ([], "weights is empty"),
    ([1.0, "x"], "weights[1] = 'x' is not a number"),
])
def test_spherical_weights_reject_bad_input(raw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        spherical_weights(raw)


def test_nested_weights_reject_out_of_range():
    with pytest.raises(ValueError, match=r"omegas\[0\] = 1.5 is outside \[0, 1\]"):
        nested_weights([1.5])


@settings(deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6))
def test_omegas_from_weights_inverts_nested_weights(omegas):
    w = nested_weights(omegas)
    back = omegas_from_weights(w)
    # sqrt(1 - omega^2) is ill-conditioned near omega = 1 (1e-16 in omega -> 1e-8 in a weight)
    assert nested_weights(back) == pytest.approx(w, abs=1e-7)
