"""The one percentile definition every bench, check and report uses: nearest rank.

The ``p``-th percentile of ``n`` values is the smallest value with at least ``p`` % of the
values at or below it: sorted ascending, the value at rank ``max(1, ceil(p / 100 * n))``
(ranks counted from 1). So ``p=0`` is the minimum, ``p=100`` the maximum, and the 99th
percentile of 100 values is the 99th smallest.

Why nearest rank rather than interpolation: the answer is always a value that was measured,
it needs no assumption about what lies between two samples, and a threshold on it reads
plainly ("at least 99 % of the gaps were this or shorter"). The one exception is
:class:`loadtests.metrics.ExactHistogram`, whose ``interpolated_percentile`` follows vLLM's
benchmark so its figures compare with vLLM's; its docstring says so.

``p`` is read as the decimal number it was written as (``99.9`` is 999/10, not the binary float
just above it), so a rank never moves by one because ``p / 100 * n`` came out as
``7.000000000000001``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

__all__ = ["percentile"]


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (any order), ``0 <= p <= 100``.

    The smallest value with at least ``p`` % of the values at or below it. Raises
    :class:`ValueError` for no values (there is no percentile to report, and a NaN would
    pass silently through a comparison) and for ``p`` outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:  # also refuses NaN
        raise ValueError(f"percentile must be within 0..100, got {p}")
    ordered = sorted(values)
    rank = max(1, math.ceil(Fraction(repr(float(p))) * len(ordered) / 100))
    return ordered[rank - 1]
