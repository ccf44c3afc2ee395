"""The one home of routing-weight arithmetic: shares and integer HTTPRoute weights."""

from __future__ import annotations

import pytest

from rlscale.weights import integer_weights, traffic_shares


@pytest.mark.parametrize(("shares", "expected"), [
    ([1.0, 1.0, 1.0], [334, 333, 333]),
    ([0.7, 0.3], [700, 300]),
    ([2.0, 0.0], [1000, 0]),
    ([0.0, 0.0], [0, 0]),
    ([1e-9, 1.0], [0, 1000]),
])
def test_integer_weights_sum_to_the_total(shares: list[float], expected: list[int]) -> None:
    assert integer_weights(shares, 1000) == expected


@pytest.mark.parametrize("bad", [[-1.0, 1.0], [float("nan"), 1.0], [float("inf"), 0.0]])
def test_integer_weights_refuse_negative_or_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        integer_weights(bad, 1000)


def test_shares_go_to_eligible_pools_with_weight_only() -> None:
    assert traffic_shares([2.0, 1.0, 1.0]) == [0.5, 0.25, 0.25]
    assert traffic_shares([2.0, 1.0, 1.0], [True, False, True]) == [2 / 3, 0.0, 1 / 3]
    assert traffic_shares([0.0, 1.0], [True, True]) == [0.0, 1.0]


def test_no_eligible_pool_gives_zeros_or_equal_shares_as_asked() -> None:
    assert traffic_shares([1.0, 1.0], [False, False]) == [0.0, 0.0]
    assert traffic_shares([0.0, 0.0]) == [0.0, 0.0]
    assert traffic_shares([0.0, 0.0, 0.0], if_none="equal") == [1 / 3] * 3
    assert traffic_shares([], if_none="equal") == []


def test_shares_need_one_flag_per_weight() -> None:
    with pytest.raises(ValueError, match="2 weights but 1"):
        traffic_shares([1.0, 1.0], [True])
