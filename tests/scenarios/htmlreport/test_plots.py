"""Plot builders (pure): bins that show the body of a distribution, lines, lanes, time axes."""

from __future__ import annotations

import math

import pytest

from scenarios.htmlreport.plots import (
    Distribution,
    Lane,
    Line,
    Series,
    bin_edges,
    distribution_figure,
    log_ticks,
    time_series_figure,
    timeline_figure,
)


def test_a_long_tail_gets_log_bins_so_the_body_is_not_one_bar() -> None:
    # 416 of 555 streams between 5 and 15 ms, a tail to 1 s: bins from 0 to the tail's end
    # (the old report's) put the whole body in the first bar
    body = [5.0 + 10.0 * i / 415 for i in range(416)]
    tail = [20.0 * 50 ** (i / 138) for i in range(139)]
    edges, log = bin_edges(body + tail)
    assert log
    assert edges[0] == pytest.approx(5.0) and edges[-1] == pytest.approx(1000.0)
    fig = distribution_figure([("TTFT", {"all": Distribution(body + tail)}, [], [])])
    counts = fig["data"][0]["y"][:-1]
    assert sum(counts) == 555
    assert max(counts) < len(body) / 4  # the body spread over several bars


def test_a_narrow_distribution_gets_linear_bins_and_zeros_fall_into_the_first_log_bin() -> None:
    edges, log = bin_edges([10.0, 11.0, 12.0])
    assert not log and edges[0] == 10.0 and edges[-1] == pytest.approx(12.0)
    edges, log = bin_edges([0.0, 0.0, 0.05, 10.0])
    assert log and edges[0] == pytest.approx(0.05)
    fig = distribution_figure([("ITL", {"ws": Distribution([0.0, 0.0, 0.05, 10.0])}, [], [])])
    (trace,) = fig["data"]
    assert trace["y"][0] == 3 and sum(trace["y"][:-1]) == 4  # the zeros counted, not lost
    assert fig["layout"]["xaxis"]["type"] == "log"


def test_weighted_samples_count_by_weight() -> None:
    fig = distribution_figure([("TTFT", {"all": Distribution([1.0, 2.0], [5, 0])}, [], [])])
    assert sum(fig["data"][0]["y"][:-1]) == 5


def test_percentiles_and_thresholds_are_labelled_lines() -> None:
    fig = distribution_figure(
        [("TTFT", {"ws": Distribution([10.0, 20.0, 30.0])},
          [Line("p50", 20.0), Line("p90", 30.0), Line("p99", 30.0)],
          [Line("gate ttft-p95-ms <=", 25.0)])]
    )  # fmt: skip
    shapes = fig["layout"]["shapes"]
    assert sorted(s["x0"] for s in shapes) == [20.0, 25.0, 30.0]
    texts = {a["text"] for a in fig["layout"]["annotations"]}
    assert texts == {"p50 20.0 ms", "p90 = p99 30.0 ms", "gate ttft-p95-ms <= 25.0 ms"}
    gate = next(s for s in shapes if s["x0"] == 25.0)
    assert gate["line"]["dash"] == "solid"
    assert fig["layout"]["xaxis"]["title"]["text"] == "TTFT (ms, linear)"
    assert fig["layout"]["yaxis"]["dtick"] == 1  # three samples: whole counts


def test_labels_on_a_log_axis_sit_at_the_values_log() -> None:
    fig = distribution_figure(
        [("ITL", {"ws": Distribution([1.0, 1000.0])}, [Line("p50", 100.0)], [])]
    )
    (note,) = fig["layout"]["annotations"]
    assert note["x"] == pytest.approx(2.0)  # Plotly places annotations on log axes by log10
    assert fig["layout"]["shapes"][0]["x0"] == 100.0  # ... and shapes by the value


def test_timeline_rows_first_stream_on_top_and_one_legend_entry_per_kind() -> None:
    lanes = [
        Lane("group 0 · client 0 · msg 0", 0.0, [5.0, 6.0], ["a", "b"], True, 7.0, "completed"),
        Lane("group 0 · client 1 · msg 0", 1.0, [8.0], ["c"], False, None),
    ]
    fig = timeline_figure(lanes, [(4.0, "reset")], x_title="ms")
    names = [t["name"] for t in fig["data"]]
    assert names == [
        "token (stream ended well)", "token (stream failed or cut off)", "request sent",
        "end: completed", "fault (harness action)",
    ]  # fmt: skip
    assert fig["layout"]["yaxis"]["categoryarray"] == [lanes[1].label, lanes[0].label]
    assert fig["data"][0]["hovertext"] == ["a", "b"]
    assert fig["layout"]["shapes"][0]["x0"] == 4.0


def test_time_series_share_a_utc_time_axis() -> None:
    fig = time_series_figure(
        [Series("users", [0.0, 1.0], [1, 2]), Series("errors/s", [0.0, 1.0], [0, 1], row=2)],
        row_titles=["users", "errors/s"],
    )
    assert fig["data"][0]["x"] == ["1970-01-01 00:00:00.000", "1970-01-01 00:00:01.000"]
    assert fig["data"][1]["yaxis"] == "y2"
    assert fig["layout"]["xaxis2"]["type"] == "date"
    assert fig["layout"]["xaxis2"]["title"]["text"] == "time (UTC)"
    assert math.isclose(fig["layout"]["height"], 60 + 2 * 170)


def test_a_zero_threshold_on_a_log_axis_does_not_break_the_figure() -> None:
    fig = distribution_figure(
        [("ITL", {"ws": Distribution([0.1, 50.0])}, [], [Line("gate <=", 0.0)])]
    )
    assert fig["layout"]["xaxis"]["type"] == "log"
    low, high = fig["layout"]["xaxis"]["range"]
    assert low < math.log10(0.1) < math.log10(50.0) < high


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (20.0, 250.0, [20.0, 50.0, 100.0, 200.0]),
        (20.0, 60.0, [20.0, 30.0, 40.0, 50.0, 60.0]),
        (0.05, 60.0, [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
        (1.0, 1e5, [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0]),
    ],
)
def test_log_ticks_are_written_in_full(lo: float, hi: float, expected: list[float]) -> None:
    assert log_ticks(lo, hi) == expected
