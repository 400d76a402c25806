"""The relay benchmark's arrival model (pure: parsing, Locust arguments, steady-state TTFT)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from loadtests.bench.capacity import main as capacity_main
from loadtests.bench.common import Arrival, arrival_for
from loadtests.bench.relay import (
    _cell_name,
    added_ttft,
    build_parser,
    main,
    repeat_summary,
    steady_ttft,
)
from loadtests.metrics import ExactHistogram, LoadMetrics, StreamSample


def _sample(started_at: float, ttft_s: float | None) -> StreamSample:
    return StreamSample(
        transport="ws", outcome="completed", started_at=started_at, tokens=2, ttft_s=ttft_s,
        e2e_s=0.5, tpot_s=0.1, duration_s=0.5,
    )  # fmt: skip


def test_stagger_is_the_default_and_ramps_over_one_answer() -> None:
    args = build_parser().parse_args([])
    assert args.arrival == "stagger"
    # 100 ms TTFT + 49 gaps of 20 ms = 1.08 s: the users start over one answer's length.
    arrival = arrival_for(args, 1.08)
    assert arrival == Arrival(1.08, 0.02, 0)
    assert arrival.run_time(8) == 10  # Locust's --run-time is whole seconds: rounded up
    assert arrival.locust_args(500)[:2] == ["--spawn-rate", f"{500 / 1.08:g}"]
    # Instant answers still ramp over at least a second.
    assert arrival_for(args, 0.0).ramp_s == 1.0


def test_stagger_options_reach_locust() -> None:
    args = build_parser().parse_args(["--ramp-s", "4", "--jitter-ms", "50", "--seed", "7"])
    assert arrival_for(args, 1.0).locust_args(100) == [
        "--spawn-rate", "25", "--sh-think-min", "0", "--sh-think-max", "0.05", "--sh-seed", "7",
    ]  # fmt: skip


def test_lockstep_is_the_old_burst() -> None:
    args = build_parser().parse_args(["--arrival", "lockstep", "--ramp-s", "4"])
    arrival = arrival_for(args, 1.0)
    assert arrival == Arrival(0.0, 0.0, 0)
    assert arrival.run_time(8) == 8
    assert arrival.locust_args(500) == [
        "--spawn-rate", "500", "--sh-think-min", "0", "--sh-think-max", "0", "--sh-seed", "0",
    ]  # fmt: skip


def test_steady_ttft_counts_only_streams_started_after_the_ramp() -> None:
    metrics = LoadMetrics()
    for sample in (
        _sample(100.0, 0.010),  # the first start: the ramp runs from here
        _sample(101.9, 0.020),  # still in a 2 s ramp
        _sample(102.0, 0.030),
        _sample(103.5, 0.040),
        _sample(104.0, None),  # no token: no TTFT
    ):
        metrics.record(sample, [])
    after = steady_ttft(metrics, 2.0)
    assert after.count == 2
    assert after.interpolated_percentile(0) == pytest.approx(0.030)
    assert after.interpolated_percentile(100) == pytest.approx(0.040)
    assert steady_ttft(metrics, 0.0).count == 4  # lockstep: every stream
    assert steady_ttft(LoadMetrics(), 2.0).count == 0


@pytest.mark.parametrize("bench", [main, capacity_main], ids=["relay", "capacity"])
@pytest.mark.parametrize(
    "bad", [["--ramp-s", "0"], ["--jitter-ms", "-1"], ["--arrival", "poisson"]]
)
def test_bad_arrival_arguments_are_clear_errors(
    bench: Callable[[list[str]], int], bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = bench(bad)
    except SystemExit as exc:  # parser.error
        code = int(exc.code or 0)
    assert code == 2
    err = capsys.readouterr().err
    assert "--ramp-s" in err or "--jitter-ms" in err or "--arrival" in err


def test_repeated_rounds_are_summarised_by_median_and_range() -> None:
    direct, relay = ExactHistogram(), ExactHistogram()
    direct.add_many([0.100] * 99 + [0.150])
    relay.add_many([0.1015] * 99 + [0.160])
    p50, p99 = added_ttft(relay, direct) or (0.0, 0.0)
    # p99 interpolates 1 % of the way to the top sample: 1.5 + 0.01 * (10 - 1.5)
    assert p50 == pytest.approx(1.5) and p99 == pytest.approx(1.585)
    assert added_ttft(ExactHistogram(), direct) is None
    line = repeat_summary("reference", 500, [(0.9, 3.0), (1.6, -2.0), (0.1, 9.0)], 3)
    assert line == (
        "reference at 500: added TTFT p50 +0.90 ms median (+0.10 .. +1.60), "
        "p99 +3.00 ms median (-2.00 .. +9.00) over 3 rounds"
    )
    assert repeat_summary("naive", 500, [(1400.0, 1500.0)], 5).endswith(
        "over the 1 of 5 rounds with TTFT samples"
    )
    assert _cell_name("reference", 500, "") == "reference-500"
    assert _cell_name("reference", 500, " #2") == "reference-500-2"
    assert _cell_name("direct", 500, " (instant)") == "direct-500-instant"
    assert _cell_name("bare hop", 500, "") == "bare-hop-500"
    assert _cell_name("2 workers + redis", 500, " #2") == "2-workers-redis-500-2"
    assert repeat_summary("reference over the bare hop", 500, [(0.42, 2.5)], 1) == (
        "reference over the bare hop at 500: added TTFT p50 +0.42 ms, p99 +2.50 ms in one round"
    )


def test_the_bare_hop_is_on_by_default_and_can_be_skipped() -> None:
    assert build_parser().parse_args([]).bare_hop is True
    assert build_parser().parse_args(["--no-bare-hop"]).bare_hop is False


def test_repeat_must_be_at_least_one() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--repeat", "0"])
    assert info.value.code == 2
