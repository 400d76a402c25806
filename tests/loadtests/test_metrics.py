"""Pure metric tests: exact percentiles, stream summaries, merging, serialisation."""

from __future__ import annotations

import itertools
import json
import random
import statistics

import pytest

from loadtests.metrics import (
    RESOLUTION_S,
    ExactHistogram,
    LoadMetrics,
    MetricsError,
    Slo,
    StreamSample,
    summarise_stream,
)


def _reference_percentile(values: list[float], p: float) -> float:
    """numpy-style linear interpolation on quantised raw samples."""
    q = sorted(round(v / RESOLUTION_S) * RESOLUTION_S for v in values)
    if p == 100:
        return q[-1]
    if p == 0:
        return q[0]
    return statistics.quantiles(q, n=1000, method="inclusive")[int(p * 10) - 1]


@pytest.mark.parametrize("p", [1.0, 50.0, 90.0, 95.0, 99.0, 99.9])
def test_percentiles_match_raw_samples(p: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-3, 1) for _ in range(5001)]
    h = ExactHistogram()
    h.add_many(values)
    got = h.interpolated_percentile(p)
    assert got is not None
    assert got == pytest.approx(_reference_percentile(values, p), abs=1e-9)


def test_exact_to_a_tenth_of_a_millisecond_unlike_locust_buckets() -> None:
    h = ExactHistogram()
    h.add_many([0.20012, 0.20034, 0.20049])
    # Locust would report all three as 200 ms; we keep 10 µs resolution.
    assert h.interpolated_percentile(50) == pytest.approx(0.20034, abs=6e-6)
    assert h.max == pytest.approx(0.20049, abs=6e-6)
    assert h.min == pytest.approx(0.20012, abs=6e-6)


def test_empty_histogram_has_no_percentiles() -> None:
    h = ExactHistogram()
    assert h.interpolated_percentile(99) is None
    assert h.mean is None and h.min is None and h.max is None
    with pytest.raises(MetricsError):
        h.interpolated_percentile(101)
    with pytest.raises(MetricsError):
        h.add(float("nan"))


def test_summarise_stream_follows_vllm_definitions() -> None:
    sent = 100.0
    arrivals = [100.2, 100.25, 100.31, 100.40]
    sample, gaps = summarise_stream(
        transport="ws",
        outcome="completed",
        sent_at=sent,
        sent_at_epoch=1_700_000_000.0,
        arrivals=arrivals,
        ended_at=100.41,
    )
    assert sample.tokens == 4
    assert sample.ttft_s == pytest.approx(0.2)
    assert gaps == pytest.approx([0.05, 0.06, 0.09])
    assert sample.e2e_s == pytest.approx(0.41)
    assert sample.tpot_s == pytest.approx((0.41 - 0.2) / 3)
    assert sample.max_itl_s == pytest.approx(0.09)


def test_error_streams_have_no_e2e_and_unknown_outcome_is_refused() -> None:
    sample, _ = summarise_stream(
        transport="sse",
        outcome="error",
        sent_at=0.0,
        sent_at_epoch=0.0,
        arrivals=[0.1],
        ended_at=0.2,
        error_code="upstream_error",
    )
    assert sample.e2e_s is None and sample.tpot_s is None
    assert sample.duration_s == pytest.approx(0.2)
    with pytest.raises(MetricsError, match="unknown outcome"):
        summarise_stream(
            transport="ws", outcome="bogus", sent_at=0, sent_at_epoch=0, arrivals=[], ended_at=1
        )


def _random_streams(seed: int, n: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for i in range(n):
        sent = i * 0.37
        t = sent + rng.uniform(0.05, 0.4)
        arrivals = []
        for _ in range(rng.randint(0, 40)):
            arrivals.append(t)
            t += rng.expovariate(50)
        outcome = rng.choice(
            ["completed", "completed", "completed", "cancelled", "error", "resumed"]
        )
        out.append(
            {
                "transport": "ws",
                "outcome": outcome,
                "sent_at": sent,
                "sent_at_epoch": 1_700_000_000.0 + sent,
                "arrivals": arrivals,
                "ended_at": t,
            }
        )
    return out


def test_merging_workers_equals_single_process_on_same_samples() -> None:
    streams = _random_streams(seed=3, n=600)
    single = LoadMetrics()
    for s in streams:
        single.record_stream(**s)  # type: ignore[arg-type]

    # Four "workers", each reporting deltas several times, shipped as JSON like Locust does
    # (msgpack there; JSON is the stricter of the two for key types).
    master = LoadMetrics()
    workers = [LoadMetrics() for _ in range(4)]
    for i, s in enumerate(streams):
        workers[i % 4].record_stream(**s)  # type: ignore[arg-type]
        delays = [0.0001 * ((i * 7 + k) % 50) for k in range(3)]
        workers[i % 4].read_delay.add_many(delays)
        single.read_delay.add_many(delays)
        if i % 97 == 0:
            for w in workers:
                master.merge(LoadMetrics.from_dict(json.loads(json.dumps(w.take().to_dict()))))
    for w in workers:
        master.merge(LoadMetrics.from_dict(json.loads(json.dumps(w.take().to_dict()))))

    assert master.ttft == single.ttft
    assert master.itl == single.itl
    assert master.tpot == single.tpot
    assert master.e2e == single.e2e
    assert sorted(master.streams, key=lambda s: s.started_at) == single.streams
    assert master.tokens_per_second == single.tokens_per_second
    assert master.read_delay == single.read_delay and master.read_delay.count == 3 * 600
    slo = Slo(ttft_s=0.3, tpot_s=0.05)
    a, b = master.summary(slo), single.summary(slo)
    assert a == b
    # and the figures are the raw-sample figures
    all_gaps = [
        y - x
        for s in streams
        if s["outcome"] != "error"
        for x, y in itertools.pairwise(s["arrivals"])  # type: ignore[call-overload]
    ]
    assert a["metrics_ms"]["itl"]["count"] == len(all_gaps)
    assert a["metrics_ms"]["itl"]["p99"] == pytest.approx(
        _reference_percentile(all_gaps, 99) * 1000, abs=1e-3
    )


def test_goodput_and_error_rate() -> None:
    m = LoadMetrics()
    base = {"transport": "ws", "sent_at": 0.0, "sent_at_epoch": 0.0}
    m.record_stream(**base, outcome="completed", arrivals=[0.1, 0.2], ended_at=0.2)  # good
    m.record_stream(**base, outcome="completed", arrivals=[0.5, 0.6], ended_at=0.6)  # slow TTFT
    m.record_stream(**base, outcome="error", arrivals=[], ended_at=0.1)
    m.record_stream(**base, outcome="cancelled", arrivals=[0.1], ended_at=0.15)  # not counted
    assert m.error_rate() == pytest.approx(1 / 4)
    assert m.goodput(Slo(ttft_s=0.3)) == pytest.approx(1 / 3)
    assert m.goodput(Slo()) == pytest.approx(2 / 3)
    assert m.outcome_counts()["cancelled"] == 1
    assert m.ttft.count == 3  # cancelled stream's first token counts, the error's does not exist
    assert m.e2e.count == 2


def test_active_streams_and_timeline() -> None:
    m = LoadMetrics()
    m.record_stream(
        transport="ws",
        outcome="completed",
        sent_at=0.0,
        sent_at_epoch=1000.0,
        arrivals=[0.5, 1.5, 2.5],
        ended_at=2.6,
    )
    m.record_stream(
        transport="ws",
        outcome="completed",
        sent_at=0.0,
        sent_at_epoch=1001.0,
        arrivals=[0.1],
        ended_at=0.2,
    )
    assert m.tokens_per_second == {1000: 1, 1001: 2, 1002: 1}
    assert m.active_streams(1.0)[:3] == [(0.0, 1), (1.0, 2), (2.0, 1)]


def test_malformed_serialised_data_is_a_clear_error() -> None:
    with pytest.raises(MetricsError):
        LoadMetrics.from_dict({"ttft": {}})
    with pytest.raises(MetricsError, match="resolution"):
        ExactHistogram.from_dict({"resolution_s": 0.001, "counts": []})
    with pytest.raises(MetricsError):
        StreamSample.from_row([1, 2])


def test_unfinished_streams_count_tokens_but_not_outcomes() -> None:
    m = LoadMetrics()
    base = {"transport": "ws", "sent_at": 0.0, "sent_at_epoch": 0.0}
    m.record_stream(**base, outcome="completed", arrivals=[0.1, 0.2], ended_at=0.2)
    m.record_stream(**base, outcome="error", arrivals=[], ended_at=0.1)
    m.record_stream(**base, outcome="unfinished", arrivals=[0.1, 0.15, 0.3], ended_at=0.5)
    assert m.error_rate() == pytest.approx(1 / 2)  # the cut stream neither fails nor passes
    assert m.goodput(Slo()) == pytest.approx(1 / 2)
    assert m.itl.count == 1 + 2  # its gaps are real observations
    assert m.e2e.count == 1
    assert m.summary()["tokens"] == 5
