"""Checks over synthetic observations: each can pass and each can fail."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pydantic import TypeAdapter

from scenarios import model
from scenarios.checks import (
    Arrival,
    LedgerEntry,
    RunObservation,
    StreamObservation,
    figures,
    percentile,
    run_check,
    run_checks,
)

CHECK = TypeAdapter(model.Check)


def check(**fields: Any) -> model.Check:
    return CHECK.validate_python(fields)


def stream(
    key: str = "g0/c0/m0",
    tokens: str = "abc",
    start: float = 0.1,
    step: float = 0.01,
    indexes: list[int | None] | None = None,
    **fields: Any,
) -> StreamObservation:
    idx = indexes if indexes is not None else list(range(len(tokens)))
    arrivals = tuple(
        Arrival(i, ch, start + n * step) for n, (i, ch) in enumerate(zip(idx, tokens, strict=True))
    )
    fields.setdefault("expected_text", tokens)
    return StreamObservation(
        key=key,
        group=key.split("/")[0],
        client=0,
        message=0,
        prompt=f"prompt {key}",
        transport="ws",
        arrivals=arrivals,
        **fields,
    )


def entry(prompt: str, **fields: Any) -> LedgerEntry:
    data = {
        "id": "r1",
        "seq": 1,
        "status": 200,
        "stream": True,
        "tokens_sent": 3,
        "outcome": "completed",
        "started_at": 100.0,
        "ended_at": 101.0,
        "body": {"messages": [{"role": "user", "content": prompt}]},
        "text": "abc",
    }
    data.update(fields)
    return LedgerEntry.from_dict(data)


def verdict(c: model.Check, *streams: StreamObservation, **obs: Any) -> tuple[bool, str]:
    result = run_check(c, RunObservation(streams=tuple(streams), **obs))
    return result.passed, result.reason


def test_every_stream_ended() -> None:
    c = check(check="every_stream_ended")
    assert verdict(c, stream(), stream("g0/c1/m0"))[0]
    ok, reason = verdict(c, stream(), stream("g0/c1/m0", outcome="disconnected", close_code=1006))
    assert not ok
    assert reason == (
        "1 of 2 streams ended otherwise: g0/c1/m0 disconnected after 3 tokens, close 1006"
    )
    assert not verdict(c)[0]
    allowed = check(check="every_stream_ended", outcomes=["completed", "cancelled"])
    assert verdict(allowed, stream(outcome="cancelled"))[0]


def test_text_matches_mock() -> None:
    c = check(check="text_matches_mock")
    assert verdict(c, stream(tokens="hello"))[0]
    ok, reason = verdict(c, stream(tokens="hellp", expected_text="hello"))
    assert not ok and "differs at char 4" in reason
    ok, reason = verdict(c, stream(tokens="hello", expected_text=None))
    assert not ok and "unknown" in reason
    # a cancelled stream may stop early, but only with the answer's beginning
    assert verdict(c, stream(tokens="he", expected_text="hello", outcome="cancelled"))[0]
    assert not verdict(c, stream(tokens="hx", expected_text="hello", outcome="cancelled"))[0]
    # a resend that replays everything doubles the text: caught
    assert not verdict(c, stream(tokens="abab", expected_text="ab", indexes=[0, 1, 0, 1]))[0]


def test_indexes_dense() -> None:
    c = check(check="indexes_dense")
    assert verdict(c, stream())[0]
    ok, reason = verdict(c, stream(tokens="abcb", indexes=[0, 1, 2, 1]))
    assert not ok and "duplicate [1]" in reason
    ok, reason = verdict(c, stream(tokens="ac", indexes=[0, 2]))
    assert not ok and "missing [1]" in reason
    ok, reason = verdict(c, stream(tokens=""))
    assert not ok and "no stream received a token" in reason


def test_a_check_the_target_cannot_give_is_not_applicable() -> None:
    obs = RunObservation(streams=(stream(indexes=[0, 0, 0]),))
    c = check(check="indexes_dense")
    [result] = run_checks([c], obs, lambda needs: "no indexes" if "indexes" in needs else None)
    assert result.passed and not result.applicable
    assert result.reason == "not applicable: no indexes"
    assert result.to_dict()["applicable"] is False
    [judged] = run_checks([c], obs, lambda needs: None)
    assert not judged.passed and judged.applicable


def test_upstream_stopped_after_cancel() -> None:
    c = check(check="upstream_stopped_after_cancel", within_ms=200)
    s = stream(cancelled_at_epoch=100.5, outcome="cancelled")
    fast = entry(s.prompt, ended_at=100.6, outcome="client_disconnected")
    assert verdict(c, s, ledger=(fast,)) == (True, "1 cancels, worst 100 ms")
    slow = entry(s.prompt, ended_at=101.5, outcome="completed")
    ok, reason = verdict(c, s, ledger=(slow,))
    assert not ok and "ended 1000 ms after the cancel" in reason
    running = entry(s.prompt, ended_at=None, outcome=None)
    assert "still running" in verdict(c, s, ledger=(running,))[1]
    assert "no upstream request" in verdict(c, s, ledger=(entry("other"),))[1]
    ok, reason = verdict(c, stream(), ledger=(fast,))
    assert not ok and "no stream was cancelled" in reason


def test_upstream_requests_counts_per_prompt() -> None:
    one = check(check="upstream_requests", min=1, max=1)
    s = stream()
    assert verdict(one, s, ledger=(entry(s.prompt),))[0]
    ok, reason = verdict(one, s, ledger=(entry(s.prompt), entry(s.prompt, id="r2")))
    assert not ok and "g0/c0/m0: 2 upstream requests: a second generation for one message" in (
        reason
    )
    # "client 1" must not count "client 10"'s requests: the match is on the whole prompt
    other = stream("g0/c10/m0")
    assert verdict(one, s, ledger=(entry(s.prompt), entry(other.prompt)))[0]
    retried = check(check="upstream_requests", min=1, max=1, status=429)
    assert verdict(retried, s, ledger=(entry(s.prompt, status=429), entry(s.prompt)))[0]


def test_ttft_band_each_and_percentile() -> None:
    each = check(check="ttft", min_ms=50, max_ms=150)
    assert verdict(each, stream(start=0.1))[0]
    ok, reason = verdict(each, stream(start=0.1), stream("g0/c1/m0", start=0.3))
    assert not ok and "g0/c1/m0: 300 ms" in reason
    p50 = check(check="ttft", stat="p50", max_ms=150)
    assert verdict(p50, stream(start=0.1), stream("g0/c1/m0", start=0.3))[0]
    assert not verdict(each)[0]


def test_itl_band() -> None:
    c = check(check="itl", stat="max", max_ms=20)
    assert verdict(c, stream(step=0.01))[0]
    ok, reason = verdict(c, stream(step=0.05))
    assert not ok and reason.startswith("max = 50.0 ms")


def test_e2e_band_uses_end_time() -> None:
    c = check(check="e2e", max_ms=500)
    assert verdict(c, stream(ended_t=0.2))[0]
    assert not verdict(c, stream(ended_t=0.9))[0]


def test_close_and_error_codes() -> None:
    close = check(check="close_code", code=1001)
    assert verdict(close, stream(close_code=1001), stream("g0/c1/m0"))[0]
    assert not verdict(
        check(check="close_code", code=1001, streams="all"),
        stream(close_code=1001),
        stream("g0/c1/m0"),
    )[0]
    either = check(check="close_code", code=[1008, 1006], streams="all")
    assert verdict(either, stream(close_code=1008), stream("g0/c1/m0", close_code=1006))[0]
    ok, reason = verdict(either, stream(close_code=1008), stream("g0/c1/m0"))
    assert not ok and "1 of 2 streams closed so; codes seen [1008]" in reason
    err = check(check="error_code", code="upstream_error", retryable=True)
    assert verdict(err, stream(error_code="upstream_error", error_retryable=True))[0]
    ok, reason = verdict(err, stream(error_code="upstream_error", error_retryable=False))
    assert not ok and "codes seen ['upstream_error']" in reason


def test_no_leaks() -> None:
    c = check(check="no_leaks", keys=["streams", "tasks"])
    base = {"streams": 0, "tasks": 3}
    assert verdict(c, stream(), stats_baseline=base, stats_after={"streams": 0, "tasks": 3})[0]
    ok, reason = verdict(c, stream(), stats_baseline=base, stats_after={"streams": 2, "tasks": 3})
    assert not ok and reason == "streams 0 -> 2"
    assert "not available" in verdict(c, stream())[1]
    slack = check(check="no_leaks", keys=["tasks"], slack=1)
    assert verdict(slack, stream(), stats_baseline=base, stats_after={"tasks": 4})[0]


def test_stats_bounded() -> None:
    c = check(check="stats_bounded", key="send_queue_bytes", max=1000)
    assert verdict(c, stream(), stats_peak={"send_queue_bytes": 900})[0]
    assert not verdict(c, stream(), stats_peak={"send_queue_bytes": 5000})[0]
    assert "never sampled" in verdict(c, stream())[1]


def test_groups_limit_a_check() -> None:
    c = check(check="every_stream_ended", groups=["good"])
    result = run_check(
        c,
        RunObservation(streams=(stream("good/c0/m0"), stream("bad/c0/m0", outcome="timeout"))),
    )
    assert result.passed and result.check.endswith("[good]")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 95) == 7
    with pytest.raises(ValueError):
        percentile([], 50)


def test_figures() -> None:
    f = figures(RunObservation(streams=(stream(), stream("g0/c1/m0", outcome="timeout"))))
    assert f["streams"] == 2 and f["completed"] == 1 and f["tokens"] == 6
    assert f["ttft_p50_ms"] == 100.0 and f["itl_p50_ms"] == 10.0


def test_ledger_entry_reads_content_parts() -> None:
    e = LedgerEntry.from_dict(
        {"id": "x", "body": {"messages": [{"content": [{"type": "text", "text": "hi there"}]}]}}
    )
    assert e.matches("hi there") and e.ended_at is None and e.outcome is None


def test_finish_reason_and_usage_as_the_provider_gave_them() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19}
    upstream = entry("p", finish_reason="length", usage=usage)
    fine = dataclasses.replace(stream(), prompt="p", finish_reason="length", usage=dict(usage))
    assert verdict(check(check="finish_reason"), fine, ledger=(upstream,))[0]
    assert verdict(check(check="usage"), fine, ledger=(upstream,))[0]
    wrong = dataclasses.replace(fine, finish_reason="stop", usage={"completionTokens": 9})
    ok, reason = verdict(check(check="finish_reason"), wrong, ledger=(upstream,))
    assert not ok and "the client got finish_reason 'stop', the provider said 'length'" in reason
    ok, reason = verdict(check(check="usage"), wrong, ledger=(upstream,))
    assert not ok and "completion_tokens 9 (provider 10)" in reason
    camel = dataclasses.replace(fine, usage={"promptTokens": 9, "completionTokens": 10})
    assert verdict(check(check="usage"), camel, ledger=(upstream,))[0]


def test_heartbeat_finds_the_longest_silence() -> None:
    c = check(check="heartbeat", max_gap_ms=500)
    beating = dataclasses.replace(stream(start=2.0), heartbeats=(0.3, 0.6, 0.9, 1.2, 1.5, 1.8))
    assert verdict(c, beating)[0]
    silent = stream(start=2.0)
    ok, reason = verdict(c, silent)
    assert not ok and "2000 ms with neither a token nor a heartbeat (from 0 ms)" in reason
    assert "0 heartbeats while it was open" in reason


def test_the_announced_counts_must_hold() -> None:
    late = dataclasses.replace(
        stream(start=0.9), heartbeats=(0.3, 0.6), announced_heartbeat_ms=100.0
    )
    ok, reason = verdict(check(check="heartbeat", announced=True), late)
    assert not ok and "300 ms with neither a token nor a heartbeat" in reason
    count = dataclasses.replace(stream(), announced_tokens=2)
    ok, reason = verdict(check(check="indexes_dense"), count)
    assert not ok and "the end says 2 tokens, 3 arrived" in reason


def test_a_timeout_says_whether_the_server_went_quiet_or_the_client_ran_out_of_time() -> None:
    c = check(check="every_stream_ended")
    done = entry("prompt g0/c0/m0", ended_at=100.5)  # the provider finished 0.5 s in

    def timed_out(last_token_t: float) -> StreamObservation:
        return stream(
            outcome="timeout", sent_at_epoch=100.0, ended_t=10.0, start=last_token_t - 0.02
        )

    ok, reason = verdict(c, timed_out(9.9), ledger=(done,))
    assert not ok and "the client gave up 9.5 s later with 3 tokens still arriving" in reason
    ok, reason = verdict(c, timed_out(1.0), ledger=(done,))
    assert not ok and "the client then waited 9.5 s with 3 tokens: no error, no end" in reason
