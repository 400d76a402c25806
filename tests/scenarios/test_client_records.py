"""StreamRecord metrics from made-up timestamps (no sockets, no clock)."""

from __future__ import annotations

import pytest

from scenarios.clients import StreamRecord, TokenArrival


def _record(times: list[float], indexes: list[int] | None = None) -> StreamRecord:
    r = StreamRecord(transport="ws", id="a", sent_at=10.0, sent_at_epoch=1000.0)
    for i, t in enumerate(times):
        r.add(indexes[i] if indexes else i, f"t{i} ", t)
    return r


def test_metrics_from_arrivals() -> None:
    r = _record([10.5, 10.6, 10.8, 11.1])
    r.finish("completed", 11.2)
    assert r.text == "t0 t1 t2 t3 "
    assert r.ttft_s == pytest.approx(0.5)
    assert r.gaps_s == pytest.approx([0.1, 0.2, 0.3])
    assert r.e2e_s == pytest.approx(1.2)
    assert r.tpot_s == pytest.approx(0.2)
    assert r.duplicate_indexes == []
    assert r.missing_indexes == []
    assert r.done


def test_empty_record_has_no_timings() -> None:
    r = StreamRecord(transport="sse", id="x")
    assert (r.ttft_s, r.e2e_s, r.tpot_s, r.gaps_s, r.text) == (None, None, None, [], "")
    assert r.missing_indexes == []


def test_one_token_has_ttft_but_no_tpot() -> None:
    r = _record([10.25])
    assert r.ttft_s == pytest.approx(0.25)
    assert r.tpot_s is None


def test_duplicates_and_gaps_in_indexes() -> None:
    r = _record([11, 12, 13, 14, 15], indexes=[0, 1, 1, 3, 3])
    assert r.duplicate_indexes == [1, 3]
    assert r.missing_indexes == [2]


def test_missing_extends_to_announced_count() -> None:
    r = _record([11, 12], indexes=[0, 1])
    r.expected_tokens = 4
    assert r.missing_indexes == [2, 3]


def test_first_outcome_wins_and_reopen_clears_it() -> None:
    r = _record([11])
    r.finish("disconnected", 12.0)
    r.finish("completed", 13.0)
    assert (r.outcome, r.ended_at) == ("disconnected", 12.0)
    r.reopen()
    assert (r.outcome, r.ended_at, r.reconnects) == (None, None, 1)
    r.finish("completed", 14.0)
    assert r.outcome == "completed"


def test_tool_call_fragments_are_arrivals_but_not_text() -> None:
    r = StreamRecord(transport="ws", id="a", sent_at=0.0)
    r.add(0, '{"a"', 1.0, "tool_call")
    r.add(1, "hi", 2.0)
    assert r.text == "hi"
    assert r.tokens == [TokenArrival(1, "hi", 2.0)]
    assert r.ttft_s == 1.0


def test_summary_is_relative_to_sent_at() -> None:
    r = _record([10.5, 11.0])
    r.finish("completed", 11.0)
    s = r.summary()
    assert s["arrivals"] == [[0, 0.5], [1, 1.0]]
    assert s["outcome"] == "completed"


def test_pure_package_imports_no_event_loop() -> None:
    # Locust users import this package under gevent: it must not pull asyncio or sockets in.
    import subprocess
    import sys

    code = (
        "import sys, scenarios.clients;"
        "bad = {'asyncio', 'websockets', 'httpx', 'socket'} & set(sys.modules);"
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_is_explicit() -> None:
    import scenarios.clients as pure
    from scenarios.clients import aio

    for module in (pure, aio):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert "V1Connection" in aio.__all__ and "StreamRecord" in pure.__all__
