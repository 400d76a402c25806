"""shared.py: the numbering and rule counters of ``--workers N``, bumped by real forked
processes at the same time."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from mockllm.rules import RuleBook, parse_rules
from mockllm.shared import MAX_RULE_SLOTS, LocalSequence, SharedCounters

FORK = multiprocessing.get_context("fork")
ROUNDS = 20_000
# Enough that two processes bumping a counter without the lock lose some of the bumps.
NUMBERS = 200_000


def _in_processes(target: Any, *args: Any, count: int = 2) -> list[Any]:
    """Run ``target(queue, *args)`` in ``count`` forked processes at once; their results."""
    queue = FORK.SimpleQueue()
    start = FORK.Barrier(count)
    procs = [FORK.Process(target=target, args=(queue, start, *args)) for _ in range(count)]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return results


def _number(queue: Any, start: Any, counters: SharedCounters) -> None:
    sequence = counters.sequence()
    start.wait()
    queue.put([sequence.next() for _ in range(NUMBERS)])


def test_the_shared_sequence_gives_every_number_once_across_processes() -> None:
    counters = SharedCounters.create()
    numbers = [n for got in _in_processes(_number, counters) for n in got]
    assert sorted(numbers) == list(range(1, 2 * NUMBERS + 1))
    assert counters.sequence().peek() == 2 * NUMBERS + 1


def _choose(queue: Any, start: Any, counters: SharedCounters, raw: Any) -> None:
    book = RuleBook.shared(counters)
    book.add(parse_rules(raw))
    start.wait()
    queue.put(sum(book.choose(list(book.rules), commit=True) is not None for _ in range(ROUNDS)))


def test_a_rules_times_holds_across_processes() -> None:
    counters = SharedCounters.create()
    raw = [{"id": "r", "times": ROUNDS // 2, "respond": {"text": "x"}}]
    chosen = _in_processes(_choose, counters, raw)
    # Each process's book points at the same counters: one "times" for both.
    assert sum(chosen) == ROUNDS // 2
    book = RuleBook.shared(counters)
    book.add(parse_rules(raw))
    assert (book.seen["r"], book.applied["r"]) == (2 * ROUNDS, ROUNDS // 2)


def test_rule_slots_are_the_lowest_free_and_freed_on_removal() -> None:
    counters = SharedCounters.create()
    book = RuleBook.shared(counters)
    book.add(parse_rules([{"id": "a"}, {"id": "b"}, {"id": "c"}]))
    assert book.slots == {"a": 0, "b": 1, "c": 2}
    book.choose([book.rules[1]], commit=True)
    assert book.seen == {"b": 1}
    assert book.remove("b")
    assert book.free_slots(2) == [1, 3]
    book.add(parse_rules([{"id": "d"}]), [7])
    assert book.slots == {"a": 0, "c": 2, "d": 7}
    book.clear()
    assert book.slots == {} and book.free_slots(1) == [0]


def test_no_free_slot_is_a_clear_error() -> None:
    book = RuleBook.shared(SharedCounters.create())
    book.add(parse_rules([{"id": f"r{i}"} for i in range(MAX_RULE_SLOTS)]))
    with pytest.raises(Exception, match="At most 4096 rules"):
        book.add(parse_rules([{"id": "one-more"}]))
    assert len(book.rules) == MAX_RULE_SLOTS


def test_zeroing_fresh_slots_leaves_the_others() -> None:
    counters = SharedCounters.create()
    book = RuleBook.shared(counters)
    book.add(parse_rules([{"id": "a"}, {"id": "b"}]))
    for rule in book.rules:
        book.choose([rule], commit=True)
    counters.zero_rules([1])
    assert (book.seen["a"], book.seen["b"], book.applied["b"]) == (1, 0, 0)


def test_the_local_sequence() -> None:
    sequence = LocalSequence()
    assert (sequence.next(), sequence.next(), sequence.peek()) == (1, 2, 3)
    sequence.reset()
    assert sequence.next() == 1
