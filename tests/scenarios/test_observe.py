"""Tying streams to the upstream requests they caused (pure: states and ledger entries in)."""

from __future__ import annotations

from typing import Any

from scenarios.checks import LedgerEntry
from scenarios.clients.records import StreamRecord
from scenarios.drivers import StreamState
from scenarios.observe import attribute
from scenarios.plan import ClientPlan


def state(
    client: int, message: int, prompts: tuple[str, ...], sent: float, ended: float
) -> StreamState:
    plan = ClientPlan(0, "g0", client, f"g0-{client}", "default", 0.0, (), prompts)
    record = StreamRecord(transport="ws", id=f"m{message}", sent_at=10.0, sent_at_epoch=sent)
    record.finish("completed", 10.0 + (ended - sent))
    return StreamState(plan, message, records=[record], sent_at=10.0, sent_at_epoch=sent)


def entry(id: str, messages: list[dict[str, Any]], started: float) -> LedgerEntry:
    return LedgerEntry.from_dict(
        {"id": id, "started_at": started, "ended_at": started + 0.5, "status": 200,
         "outcome": "completed", "body": {"messages": messages}, "text": "t"}
    )  # fmt: skip


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_the_last_user_message_wins_over_history() -> None:
    prompts = ("s client g0-0 message 0: hi", "s client g0-0 message 1: more")
    first, second = state(0, 0, prompts, 100.0, 101.0), state(0, 1, prompts, 102.0, 103.0)
    # A server that keeps history sends message 0's prompt again with message 1.
    a = entry("a", [{"role": "system", "content": "be nice"}, user(prompts[0])], 100.1)
    b = entry(
        "b", [user(prompts[0]), {"role": "assistant", "content": "x"}, user(prompts[1])], 102.1
    )
    found = attribute([first, second], [a, b])
    assert [e.id for e in found[first.key]] == ["a"]
    assert [e.id for e in found[second.key]] == ["b"]


def test_a_rewritten_prompt_is_still_found_in_the_messages() -> None:
    s = state(0, 0, ("s client g0-0 message 0: hi",), 100.0, 101.0)
    wrapped = entry(
        "a", [{"role": "system", "content": "Q: s client g0-0 message 0: hi"}, user("?")], 100.1
    )
    assert [e.id for e in attribute([s], [wrapped])[s.key]] == ["a"]


def test_a_server_that_sends_none_of_the_words_is_matched_by_time_when_unambiguous() -> None:
    one = state(0, 0, ("s client g0-0 message 0: hi",), 100.0, 101.0)
    two = state(1, 0, ("s client g0-1 message 0: hi",), 102.0, 103.0)
    fixed = [user("Tell me a joke.")]
    found = attribute([one, two], [entry("a", fixed, 100.2), entry("b", fixed, 102.2)])
    assert [e.id for e in found[one.key]] == ["a"]
    assert [e.id for e in found[two.key]] == ["b"]
    # Two streams waiting at once: nobody can tell, so nobody gets it.
    overlapping = state(1, 0, ("s client g0-1 message 0: hi",), 100.1, 101.0)
    found = attribute([one, overlapping], [entry("a", fixed, 100.2)])
    assert found[one.key] == [] and found[overlapping.key] == []


def test_a_request_for_another_scenario_is_left_alone() -> None:
    # The server passes prompts on (one stream is matched by it): a request without one of the
    # run's prompts is a leftover of an earlier scenario, even inside a stream's window.
    one = state(0, 0, ("s client g0-0 message 0: hi",), 100.0, 101.0)
    two = state(1, 0, ("s client g0-1 message 0: hi",), 100.0, 104.0)
    mine = entry("a", [user("s client g0-0 message 0: hi")], 100.1)
    leftover = entry("old", [user("t client g0-0 message 0: hi")], 100.2)
    found = attribute([one, two], [mine, leftover])
    assert [e.id for e in found[one.key]] == ["a"] and found[two.key] == []


def test_a_prompt_that_contains_another_does_not_take_its_requests() -> None:
    short = state(1, 0, ("say hi for g0-1",), 100.0, 101.0)
    long = state(11, 0, ("say hi for g0-11",), 100.0, 101.0)
    a = entry("a", [user("say hi for g0-1")], 100.1)
    b = entry("b", [user("say hi for g0-11")], 100.2)
    found = attribute([short, long], [b, a])
    assert [e.id for e in found[short.key]] == ["a"]
    assert [e.id for e in found[long.key]] == ["b"]
