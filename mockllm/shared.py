"""Counters that several worker processes share (``--workers N``): one sequence, one set of
rule counters.

A request's id and content derive from its ledger sequence number, and a rule's ``nth`` and
``times`` count requests: with several workers both must count across processes, or the
bytes of an answer would depend on which worker served it. They live in shared memory made
before the fork (:meth:`SharedCounters.create`), guarded by one lock; a chat request takes it
once for its number and once more to choose a rule when rules exist, microseconds each and
no round trip to another process. One process uses :class:`LocalSequence` and plain dicts.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.synchronize
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "MAX_RULE_SLOTS",
    "LocalSequence",
    "Numbering",
    "SharedCounters",
    "SharedSequence",
    "SlotCounts",
]

#: Rules that can exist at once when the mock runs several workers (each has a pair of
#: counters in shared memory; a removed rule frees its pair).
MAX_RULE_SLOTS: Final = 4096


class Numbering(Protocol):
    """The ledger's request numbering."""

    def next(self) -> int: ...

    def peek(self) -> int: ...

    def reset(self) -> None: ...


class LocalSequence:
    """One process's numbering: a plain int on its event loop."""

    def __init__(self) -> None:
        self._value = 0

    def next(self) -> int:
        self._value += 1
        return self._value

    def peek(self) -> int:
        return self._value + 1

    def reset(self) -> None:
        self._value = 0


@dataclass(frozen=True)
class SharedCounters:
    """The shared memory of a set of workers; made by the parent before it forks them."""

    lock: multiprocessing.synchronize.Lock
    seq: Any  # multiprocessing RawValue of a 64-bit int
    # seen counters in [0, MAX_RULE_SLOTS), applied counters in [MAX_RULE_SLOTS, 2 * ...)
    rules: Any  # multiprocessing RawArray of 64-bit ints

    @classmethod
    def create(cls) -> SharedCounters:
        ctx = multiprocessing.get_context("fork")
        return cls(
            lock=ctx.Lock(),
            seq=multiprocessing.sharedctypes.RawValue(ctypes.c_int64, 0),
            rules=multiprocessing.sharedctypes.RawArray(ctypes.c_int64, 2 * MAX_RULE_SLOTS),
        )

    def sequence(self) -> SharedSequence:
        return SharedSequence(self)

    def guard(self) -> AbstractContextManager[Any]:
        """Held while a rule is chosen, so that two workers never both take a ``times: 1``."""
        return self.lock

    def zero_rules(self, slots: list[int] | None = None) -> None:
        """Counters of fresh rules (``slots``) or of every rule back to 0."""
        with self.lock:
            for slot in range(MAX_RULE_SLOTS) if slots is None else slots:
                self.rules[slot] = 0
                self.rules[MAX_RULE_SLOTS + slot] = 0


class SharedSequence:
    """The numbering of every worker: one int in shared memory, bumped under the lock."""

    def __init__(self, counters: SharedCounters):
        self._lock = counters.lock
        self._seq = counters.seq

    def next(self) -> int:
        with self._lock:
            self._seq.value += 1
            value: int = self._seq.value
        return value

    def peek(self) -> int:
        return int(self._seq.value) + 1

    def reset(self) -> None:
        with self._lock:
            self._seq.value = 0


class SlotCounts(MutableMapping[str, int]):
    """A rule book's ``seen`` or ``applied`` counters (rule id -> count) in shared memory.

    ``slots`` (rule id -> slot) is the rule book's, shared by its two counters; a worker
    only reads and bumps the counts, the coordinating worker zeroes a slot before any worker
    gets the rule that takes it (``cluster.py``).
    """

    def __init__(self, counters: SharedCounters, applied: bool, slots: dict[str, int]):
        self._array = counters.rules
        self._base = MAX_RULE_SLOTS if applied else 0
        self._slots = slots

    def __getitem__(self, rule_id: str) -> int:
        return int(self._array[self._base + self._slots[rule_id]])

    def __setitem__(self, rule_id: str, count: int) -> None:
        self._array[self._base + self._slots[rule_id]] = count

    def __delitem__(self, rule_id: str) -> None:
        # The slot stays the rule book's until it forgets the rule (it is zeroed again
        # before it is reused, so a worker that still counts the rule meanwhile is harmless).
        self._array[self._base + self._slots[rule_id]] = 0

    def __iter__(self) -> Iterator[str]:
        return iter([rule_id for rule_id in self._slots if self[rule_id]])

    def __len__(self) -> int:
        return sum(1 for _ in self)
