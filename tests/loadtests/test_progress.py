"""The live progress line of ``streamharness load``: snapshots from metrics, lines from
snapshots (pure: no Locust, no clock, no sockets)."""

from __future__ import annotations

import io

import pytest

from loadtests.metrics import LoadMetrics
from loadtests.progress import ProgressLine, ProgressTally, Snapshot, error_reasons


def _stream(metrics: LoadMetrics, outcome: str, tokens: int, error: str | None = None) -> None:
    metrics.record_stream(
        transport="ws",
        outcome=outcome,
        sent_at=0.0,
        sent_at_epoch=1000.0,
        arrivals=[0.2 + 0.02 * i for i in range(tokens)],
        ended_at=0.2 + 0.02 * tokens,
        error_code=error,
    )


def test_the_tally_counts_streams_errors_tokens_and_ttft_incrementally() -> None:
    metrics, tally = LoadMetrics(), ProgressTally()
    assert tally.snapshot(metrics, users=0, elapsed_s=0.0) == Snapshot(0.0, 0, 0, 0, 0, None)
    _stream(metrics, "completed", 10)
    _stream(metrics, "error", 0, "connect: refused")
    assert tally.snapshot(metrics, users=3, elapsed_s=1.0) == Snapshot(1.0, 3, 2, 1, 10, 200.0)
    _stream(metrics, "timeout", 4)
    _stream(metrics, "completed", 10)
    # only the new streams are added to the totals: nothing counted twice
    assert tally.snapshot(metrics, 3, 2.0) == Snapshot(2.0, 3, 4, 2, 24, 200.0)


def test_a_snapshot_survives_json_and_refuses_anything_else() -> None:
    snap = Snapshot(3.5, 2, 5, 1, 40, 201.5)
    assert Snapshot.from_dict(snap.to_dict()) == snap
    with pytest.raises(ValueError, match="not a progress snapshot"):
        Snapshot.from_dict({"users": 1})


def test_error_reasons_are_counted_most_frequent_first_top_five() -> None:
    metrics = LoadMetrics()
    for i, n in enumerate([1, 4, 2, 3, 1, 5]):
        for _ in range(n):
            _stream(metrics, "error", 0, f"reason {i}")
    _stream(metrics, "timeout", 2)
    _stream(metrics, "cancelled", 2)  # the user's own choice: not an error
    reasons = error_reasons(metrics)
    assert reasons == [
        ("error: reason 5", 5), ("error: reason 1", 4), ("error: reason 3", 3),
        ("error: reason 2", 2), ("error: reason 0", 1),
    ]  # fmt: skip
    assert ("timeout", 1) in error_reasons(metrics, top=10)
    assert error_reasons(LoadMetrics()) == []


def test_on_a_terminal_the_line_is_rewritten_in_place_every_second() -> None:
    out = io.StringIO()
    line = ProgressLine(out, 30, tty=True)
    line.update(Snapshot(0.5, 1, 0, 0, 0, None))
    line.update(Snapshot(1.0, 2, 1, 0, 10, 201.0))  # within the second: not printed
    line.update(Snapshot(1.5, 2, 3, 1, 50, 203.4))
    line.update(Snapshot(31.0, 2, 9, 1, 90, 203.4))  # Locust's stop, past the run time
    line.finish()
    assert out.getvalue() == (
        "\rload: 0/30 s  users 1  streams 0  tokens/s 0  errors 0  TTFT p50 -"
        # 50 tokens in the 1.5 s since the start
        "\rload: 2/30 s  users 2  streams 3  tokens/s 33  errors 1  TTFT p50 203 ms"
        "\rload: 30/30 s  users 2  streams 9  tokens/s 1  errors 1  TTFT p50 203 ms"
        "\n"
    )


def test_a_shorter_line_blanks_what_the_longer_one_left() -> None:
    out = io.StringIO()
    line = ProgressLine(out, 30, tty=True)
    line.update(Snapshot(1.0, 100, 1000, 0, 10, 201.0))
    line.update(Snapshot(2.0, 1, 0, 0, 10, None))
    first, second = out.getvalue().split("\r")[1:]
    assert len(second) == len(first) and second.endswith(" ")


def test_without_a_terminal_a_plain_line_every_five_seconds() -> None:
    out = io.StringIO()
    line = ProgressLine(out, 60, tty=False)
    for t in range(12):
        line.update(Snapshot(float(t), 4, t, 0, 100 * t, 200.0))
    line.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [ln.split()[1] for ln in lines] == ["0/60", "5/60", "10/60"]
    # tokens/s over the last 5 s: 100 tokens each second
    assert "tokens/s 100 " in lines[-1]
