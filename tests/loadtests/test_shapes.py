from __future__ import annotations

import pytest

from loadtests.shapes import SHAPE_NAMES, make_shape


@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_every_shape_ends_and_never_exceeds_users(name: str) -> None:
    shape = make_shape(name, users=20, spawn_rate=5, duration_s=60)
    ticks = [shape.tick(t / 2) for t in range(0, 120)]
    assert all(t is not None for t in ticks)
    assert shape.tick(60) is None
    assert max(t[0] for t in ticks if t) == 20
    assert min(t[0] for t in ticks if t) >= 1


def test_ramp_rises_linearly_then_holds() -> None:
    s = make_shape("ramp", users=10, spawn_rate=1, duration_s=20)
    assert [s.tick(t)[0] for t in (1, 5, 9.9, 10, 15)] == [1, 5, 10, 10, 10]  # type: ignore[index]


def test_spike_is_low_high_low() -> None:
    s = make_shape("spike", users=10, spawn_rate=1, duration_s=10)
    levels = [s.tick(t)[0] for t in (0, 4, 5, 9)]  # type: ignore[index]
    assert levels == [2, 10, 10, 2]


def test_sweep_steps_up() -> None:
    s = make_shape("sweep", users=8, spawn_rate=8, duration_s=40)
    assert [s.tick(t)[0] for t in (0, 10, 20, 30, 39)] == [2, 4, 6, 8, 8]  # type: ignore[index]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"users": 0, "spawn_rate": 1, "duration_s": 1}, "users"),
        ({"users": 1, "spawn_rate": 0, "duration_s": 1}, "spawn rate"),
        ({"users": 1, "spawn_rate": 1, "duration_s": 0}, "duration"),
    ],
)
def test_bad_shape_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_shape("ramp", **kwargs)  # type: ignore[arg-type]


def test_unknown_shape() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        make_shape("zigzag", users=1, spawn_rate=1, duration_s=1)
