"""mockllm.percentiles: the one nearest-rank definition, against a brute-force reading of it."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from mockllm.percentiles import percentile


def _brute_force(values: list[float], p: float) -> float:
    """The definition word for word: the smallest value with at least p % at or below it."""
    share = Fraction(repr(float(p))) / 100
    return min(v for v in values if Fraction(sum(x <= v for x in values), len(values)) >= share)


def test_one_value_is_every_percentile() -> None:
    for p in (0, 1, 50, 99, 100):
        assert percentile([7.0], p) == 7.0


def test_small_lists() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # order does not matter
    assert percentile(values, 0) == 1.0
    assert percentile(values, 25) == 1.0
    assert percentile(values, 26) == 2.0
    assert percentile(values, 50) == 2.0
    assert percentile(values, 99) == 4.0
    assert percentile(values, 100) == 4.0


def test_one_to_a_hundred() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.5) == 100.0
    assert percentile(values, 100) == 100.0


def test_a_decimal_p_is_not_moved_by_binary_rounding() -> None:
    # 0.07 * 100 is 7.000000000000001 in floats; the 7th percentile of 1..100 is still 7.
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 7) == 7.0
    assert percentile([float(v) for v in range(1, 1001)], 99.9) == 999.0


def test_ties_and_integers() -> None:
    assert percentile([1, 1, 1, 5], 75) == 1
    assert percentile([1, 1, 1, 5], 76) == 5


def test_no_values_raise() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@pytest.mark.parametrize("p", [-1, 100.5, float("nan")])
def test_p_outside_0_to_100_raises(p: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0, 2.0], p)


def test_agrees_with_the_brute_force_definition() -> None:
    rng = random.Random(17)
    for _ in range(300):
        values = [
            round(rng.uniform(0, 50), rng.choice((0, 1, 3))) for _ in range(rng.randint(1, 40))
        ]
        for p in (0, 0.1, 1, 7, 25, 33.3, 50, 66.7, 90, 95, 99, 99.9, 100, rng.uniform(0, 100)):
            assert percentile(values, p) == _brute_force(values, p), (values, p)
