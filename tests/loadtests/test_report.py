"""Reports: table, CSV and the self-contained HTML page with four inline SVG plots."""

from __future__ import annotations

import csv
import io

from loadtests.metrics import LoadMetrics, Slo
from loadtests.report import html_report, streams_csv, summary_csv, summary_table


def _metrics() -> LoadMetrics:
    m = LoadMetrics()
    for i in range(20):
        sent = float(i)
        m.record_stream(
            transport="ws", outcome="completed" if i % 5 else "error", sent_at=sent,
            sent_at_epoch=1000.0 + sent, arrivals=[sent + 0.2 + 0.02 * k for k in range(10)],
            ended_at=sent + 0.39,
        )  # fmt: skip
    return m


def test_summary_table_names_every_metric_and_the_rates() -> None:
    text = summary_table(_metrics().summary(Slo(ttft_s=0.25)))
    for word in ("TTFT", "ITL", "TPOT", "E2E", "p99", "error rate 20.00%", "goodput 80.00%"):
        assert word in text
    assert "ttft <= 250 ms" in text


def test_summary_table_states_the_generators_read_delay_and_warns_when_it_ran_behind() -> None:
    m = _metrics()
    m.read_delay.add_many([0.0001] * 99 + [0.0004])
    text = summary_table(m.summary())
    assert "load generator read delay p50 0.10 ms" in text
    assert "warning" not in text
    m.read_delay.add_many([0.050] * 50)
    text = summary_table(m.summary())
    assert "warning: data waited in the kernel" in text and "--processes" in text
    assert "read delay" not in summary_table(_metrics().summary())


def test_csvs_have_one_row_per_stream_and_per_metric() -> None:
    m = _metrics()
    rows = list(csv.DictReader(io.StringIO(streams_csv(m.streams))))
    assert len(rows) == 20 and rows[0]["transport"] == "ws"
    metrics = list(csv.DictReader(io.StringIO(summary_csv(m.summary()))))
    assert [r["metric"] for r in metrics] == ["TTFT", "ITL", "TPOT", "E2E"]
    assert float(metrics[0]["p50_ms"]) == 200.0


def test_html_report_is_self_contained_with_four_plots() -> None:
    m = _metrics()
    page = html_report(m, m.summary(), gates=["gate ttft-p95-ms passed: 200 ms"], command="x<y")
    assert page.count("<svg") == 4
    for title in ("TTFT histogram", "ITL distribution", "active streams", "tokens/s"):
        assert title in page
    assert "x&lt;y" in page and "gate ttft-p95-ms passed" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_html_report_of_an_empty_run_still_renders() -> None:
    page = html_report(LoadMetrics(), LoadMetrics().summary())
    assert "no data" in page
