"""mockllm.ledger: recording, filtering and waiting (in memory, no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from mockllm.ledger import Entry, Ledger


def entry(ledger: Ledger, model: str = "m") -> Entry:
    seq = ledger.next_seq()
    return ledger.add(Entry(f"id{seq}", seq, model, True, {}, {}, started_at=0.0))


def test_first_ending_wins_and_disconnect_index_is_tokens_sent() -> None:
    ledger = Ledger(clock=lambda: 42.0)
    e = entry(ledger)
    e.tokens_sent = 7
    ledger.end(e, "client_disconnected", disconnect=True)
    ledger.end(e, "completed")
    assert (e.outcome, e.disconnect_index, e.ended_at) == ("client_disconnected", 7, 42.0)


def test_query_filters() -> None:
    ledger = Ledger()
    a, b, c = entry(ledger, "x"), entry(ledger, "y"), entry(ledger, "x")
    ledger.end(a, "completed")
    ledger.end(b, "fault:abort_after")
    assert ledger.query(model="x") == [a, c]
    assert ledger.query(outcome="fault:*") == [b]
    assert ledger.query(since=1) == [b, c]
    assert ledger.query(ended=True) == [a, b]
    assert ledger.seq_of("id3") == 3


def test_text_is_the_written_prefix() -> None:
    ledger = Ledger()
    e = entry(ledger)
    e.tokens = ["Hello", ",", " world"]
    e.tokens_sent = 2
    assert e.text == "Hello,"
    assert e.to_json()["text"] == "Hello,"


async def test_wait_wakes_on_ending_and_times_out() -> None:
    ledger = Ledger()
    e = entry(ledger)
    waiter = asyncio.ensure_future(ledger.wait(1, 5.0, outcome="completed"))
    await asyncio.sleep(0)
    assert not waiter.done()
    ledger.end(e, "completed")
    assert await asyncio.wait_for(waiter, 1.0) == [e]
    assert await ledger.wait(2, 0.01, outcome="completed") is None


def test_clear_can_restart_numbering() -> None:
    ledger = Ledger()
    entry(ledger)
    ledger.clear()
    assert entry(ledger).seq == 2
    ledger.clear(restart_numbering=True)
    assert entry(ledger).seq == 1


def test_compact_keeps_the_written_text_only() -> None:
    ledger = Ledger()
    e = entry(ledger)
    e.tokens = ["a", "b", "c"]
    e.tokens_sent = 2
    ledger.end(e, "client_disconnected", disconnect=True)
    ledger.compact(e)
    assert (e.text, list(e.tokens)) == ("ab", [])


def test_ledger_is_bounded() -> None:
    ledger = Ledger(max_entries=3)
    for _ in range(5):
        entry(ledger)
    assert [e.seq for e in ledger.query()] == [3, 4, 5]


async def test_a_wait_leaves_nothing_behind_when_it_ends() -> None:
    ledger = Ledger()
    timed_out = asyncio.ensure_future(ledger.wait(1, 0.01))
    cancelled = asyncio.ensure_future(ledger.wait(1, 60.0))
    await asyncio.sleep(0)
    assert ledger.waiting == 2
    assert await timed_out is None
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    # Counted while they run, forgotten at once when they end (not at the next arrival).
    assert ledger.waiting == 0
    assert len(ledger._waiters) == 0


async def test_a_cancel_that_arrives_with_a_wake_up_is_not_lost() -> None:
    # A shutdown cancels every wait; an arrival may wake the same wait in the same instant.
    ledger = Ledger()
    task = asyncio.ensure_future(ledger.wait(5, 60.0))
    await asyncio.sleep(0)
    entry(ledger)  # wakes the wait (5 entries are not there yet)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 1.0)
    assert ledger.waiting == 0
