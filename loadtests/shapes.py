"""Load shapes as pure functions of elapsed time (no Locust import).

``tick(t)`` returns ``(users, spawn_rate)`` — the target the load generator moves towards at
``spawn_rate`` users/s — or ``None`` when the run is over, exactly what Locust's
``LoadTestShape.tick`` returns; the locustfile wraps these in one ``LoadTestShape``.

- ``constant``: ramp to ``users`` at ``spawn_rate``, hold until ``duration``.
- ``ramp``: linear ramp from 0 to ``users`` over the first ``ramp_fraction`` of the run, then hold.
- ``spike``: ``base_fraction`` of the users, then all of them at once for the middle
  ``spike_fraction`` of the run, then back to the base.
- ``soak``: a quick ramp then a long hold at ``users`` (for leaks: pair it with a long duration).
- ``sweep``: ``steps`` equal plateaus at ``users * k / steps`` (k = 1..steps), to find the knee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

SHAPE_NAMES: tuple[str, ...] = ("constant", "ramp", "spike", "soak", "sweep")


class Shape(Protocol):
    @property
    def duration_s(self) -> float: ...

    def tick(self, t: float) -> tuple[int, float] | None: ...


def _check(users: int, spawn_rate: float, duration_s: float) -> None:
    if users < 1:
        raise ValueError(f"users must be at least 1, got {users}")
    if spawn_rate <= 0:
        raise ValueError(f"spawn rate must be positive, got {spawn_rate}")
    if duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")


@dataclass(frozen=True)
class Constant:
    users: int
    spawn_rate: float
    duration_s: float

    def tick(self, t: float) -> tuple[int, float] | None:
        return None if t >= self.duration_s else (self.users, self.spawn_rate)


@dataclass(frozen=True)
class Ramp:
    users: int
    duration_s: float
    ramp_fraction: float = 0.5

    def tick(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration_s:
            return None
        ramp_s = self.duration_s * self.ramp_fraction
        rate = self.users / ramp_s if ramp_s > 0 else float(self.users)
        # Step the target up each tick so the spawn rate, not a jump, sets the slope.
        target = self.users if t >= ramp_s else max(1, math.ceil(self.users * t / ramp_s))
        return target, rate


@dataclass(frozen=True)
class Spike:
    users: int
    spawn_rate: float
    duration_s: float
    base_fraction: float = 0.2
    spike_fraction: float = 0.3

    def tick(self, t: float) -> tuple[int, float] | None:
        if t >= self.duration_s:
            return None
        base = max(1, round(self.users * self.base_fraction))
        start = self.duration_s * (1 - self.spike_fraction) / 2
        end = start + self.duration_s * self.spike_fraction
        if start <= t < end:
            # A spike arrives all at once: spawn the extra users within about a second.
            return self.users, max(self.spawn_rate, float(self.users))
        return base, max(self.spawn_rate, float(self.users))


@dataclass(frozen=True)
class Soak(Constant):
    """A constant load held long enough to show leaks and drift; a name of its own in reports."""


@dataclass(frozen=True)
class Sweep:
    users: int
    spawn_rate: float
    duration_s: float
    steps: int = 4

    def level(self, t: float) -> int:
        step = min(self.steps - 1, int(t / (self.duration_s / self.steps)))
        return max(1, round(self.users * (step + 1) / self.steps))

    def tick(self, t: float) -> tuple[int, float] | None:
        return None if t >= self.duration_s else (self.level(t), self.spawn_rate)


def make_shape(name: str, *, users: int, spawn_rate: float, duration_s: float) -> Shape:
    _check(users, spawn_rate, duration_s)
    if name == "constant":
        return Constant(users, spawn_rate, duration_s)
    if name == "ramp":
        return Ramp(users, duration_s)
    if name == "spike":
        return Spike(users, spawn_rate, duration_s)
    if name == "soak":
        return Soak(users, spawn_rate, duration_s)
    if name == "sweep":
        return Sweep(users, spawn_rate, duration_s, steps=min(4, users))
    raise ValueError(f"unknown shape {name!r}; known: {', '.join(SHAPE_NAMES)}")
