"""Reports: table, CSV and the HTML page (banner, tables, Plotly figures)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from loadtests.gates import evaluate, make_gate
from loadtests.metrics import LoadMetrics, Slo
from loadtests.report import (
    html_report,
    streams_csv,
    summary_csv,
    summary_table,
    users_over_time,
    write_html_report,
)


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


def _figures(page: str) -> dict[str, dict[str, Any]]:
    found = re.findall(
        r'<script type="application/json" id="([^"]+)-data">(.*?)</script>', page, re.S
    )
    return {name: json.loads(text) for name, text in found}


def _judged(m: LoadMetrics, *gates: tuple[str, float]) -> dict[str, Any]:
    summary = m.summary()
    results = evaluate([make_gate(n, v) for n, v in gates], summary)
    summary["gates"] = [
        {"name": r.gate.name, "passed": r.passed, "actual": r.actual, "threshold": r.gate.threshold}
        for r in results
    ]
    return summary


def test_html_report_opens_with_the_gates_verdict() -> None:
    m = _metrics()
    failed = html_report(m, _judged(m, ("ttft-p95-ms", 100), ("itl-p99-ms", 50)), command="x<y")
    assert 'class="banner fail"' in failed and "1 of 2 gates failed: ttft-p95-ms" in failed
    assert "x&lt;y" in failed and 'data-target="load-command"' in failed
    passed = html_report(m, _judged(m, ("itl-p99-ms", 50)))
    assert 'class="banner pass"' in passed and "all 1 gates passed" in passed
    assert 'class="banner none"' in html_report(m, m.summary())
    # the figures are tables and plots; the JSON stays in summary.json, linked
    assert '"metrics_ms"' not in passed and '<a href="summary.json">' in passed


def test_html_report_draws_distributions_with_percentiles_and_gates() -> None:
    m = _metrics()
    figures = _figures(html_report(m, _judged(m, ("ttft-p95-ms", 250), ("e2e-p99-ms", 500))))
    first = figures["fig-dist-1"]  # TTFT and ITL
    titles = [first["layout"][k]["title"]["text"] for k in ("xaxis", "xaxis2")]
    assert [t.split(" (")[0] for t in titles] == ["TTFT", "ITL"]
    notes = {a["text"] for a in first["layout"]["annotations"]}
    # every TTFT is 200 ms here, every gap 20 ms: the three percentiles share one line
    assert notes == {"gate p95 <= 250 ms", "p50 = p90 = p99 200 ms", "p50 = p90 = p99 20.0 ms"}
    assert any(s["x0"] == 250.0 and s["line"]["dash"] == "solid" for s in first["layout"]["shapes"])
    second = figures["fig-dist-2"]  # TPOT and E2E
    assert "gate p99 <= 500 ms" in {a["text"] for a in second["layout"]["annotations"]}


def test_html_report_has_locusts_charts_over_wall_clock_time() -> None:
    m = _metrics()
    users = [(1000.0 + i, min(i + 1, 3)) for i in range(20)]
    page = html_report(m, m.summary(), users=users, locust_report="locust.html")
    fig = _figures(page)["fig-over-time"]
    names = [t["name"] for t in fig["data"]]
    assert names == ["users (Locust)", "open streams", "streams ended/s", "errors/s", "tokens/s",
                     "TTFT p50 (ms)", "TTFT p95 (ms)"]  # fmt: skip
    errors = next(t for t in fig["data"] if t["name"] == "errors/s")
    assert sum(errors["y"]) == 4  # streams 0, 5, 10, 15 failed, one a second
    assert errors["x"][0] == "1970-01-01 00:16:40.000"  # epoch 1000: a real time axis
    assert fig["layout"]["xaxis4"]["type"] == "date"
    assert '<a href="locust.html">' in page


def test_users_over_time_reads_locusts_stats_history() -> None:
    history = (
        '"Timestamp","User Count","Type","Name","Requests/s"\n'
        '1000,2,"","Aggregated",0\n'
        '1000,2,"STREAM","ws",0\n'
        '1001,5,"","Aggregated",1.5\n'
        '1002,,"","Aggregated",\n'
    )
    assert users_over_time(history) == [(1000.0, 2), (1001.0, 5)]


def test_html_report_of_an_empty_run_still_renders() -> None:
    page = html_report(LoadMetrics(), LoadMetrics().summary())
    assert "No stream produced a token" in page and "No stream was recorded" in page


def test_write_html_report_puts_plotly_beside_the_page(tmp_path: Path) -> None:
    m = _metrics()
    path = write_html_report(tmp_path, m, m.summary())
    assert path == tmp_path / "report.html"
    assert '<script src="plotly.min.js">' in path.read_text()
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
