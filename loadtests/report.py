"""Reports of a load run: terminal table, CSV, and an HTML page (pure, but for
:func:`write_html_report`).

The page opens with a PASS/FAIL banner on the gates, then the figures as tables, the TTFT,
ITL, TPOT and E2E distributions (p50/p90/p99 and each gate's threshold drawn on them), and
Locust's standard charts over wall-clock time: users and open streams, streams and errors per
second, tokens per second, TTFT over time. Plots are Plotly figures
(:mod:`scenarios.htmlreport.plots`) drawn by the ``plotly.min.js`` written beside the page;
the page is ``templates/load.html.j2``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.gates import GATE_SPECS
from loadtests.metrics import (
    ERROR_OUTCOMES,
    RESOLUTION_S,
    UNFINISHED,
    ExactHistogram,
    LoadMetrics,
    StreamSample,
)
from scenarios.htmlreport.page import render_page, write_plotly_js
from scenarios.htmlreport.plots import (
    Distribution,
    Line,
    Series,
    distribution_figure,
    time_series_figure,
)

_METRIC_LABELS = (("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT"), ("e2e", "E2E"))
_READ_DELAY_WARN_MS = 20.0
_COLUMNS = ("count", "mean", "min", "p50", "p90", "p95", "p99", "max")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def summary_table(summary: dict[str, Any]) -> str:
    """The terminal summary: one row per metric (milliseconds), then totals."""
    rows = [["metric (ms)", *_COLUMNS]]
    for key, label in _METRIC_LABELS:
        stats = summary["metrics_ms"][key]
        rows.append([label, *(_cell(stats.get(c)) for c in _COLUMNS)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    outcomes = ", ".join(f"{k} {v}" for k, v in summary["outcomes"].items() if v)
    err = summary["error_rate"]
    good = summary["goodput"]
    tps = summary["tokens_per_s"]
    lines.append("")
    lines.append(f"streams {summary['streams']} ({outcomes or 'none'})")
    lines.append(
        f"tokens {summary['tokens']} in {summary['duration_s']:.1f} s"
        + (f" = {tps:.0f} tokens/s" if tps else "")
    )
    lines.append(
        "error rate "
        + ("-" if err is None else f"{err:.2%}")
        + ", goodput "
        + ("-" if good is None else f"{good:.2%}")
        + _slo_text(summary.get("slo_ms", {}))
    )
    delay = summary.get("read_delay_ms")
    if delay:
        lines.append(
            f"load generator read delay p50 {_cell(delay.get('p50'))} ms, p99 "
            f"{_cell(delay.get('p99'))} ms, max {_cell(delay.get('max'))} ms (kernel receive "
            "stamps: not in TTFT/ITL)"
        )
        if (delay.get("p99") or 0.0) > _READ_DELAY_WARN_MS:
            lines.append(
                "warning: data waited in the kernel before the load generator read it; stamps "
                "stay exact, but frames queued on one socket share a stamp: add --processes"
            )
    share = summary.get("generator_cpu_share")
    if share is not None:
        lines.append(f"load generator CPU {share:.0%} of one core per process")
        if share > 0.8:
            lines.append(
                "warning: the load generator was near saturation; timings include its own "
                "delays: add --processes or machines"
            )
    return "\n".join(lines)


def _slo_text(slo: dict[str, float | None]) -> str:
    parts = [f"{k.removesuffix('_s')} <= {v:g} ms" for k, v in slo.items() if v is not None]
    return f" (SLO: {', '.join(parts)})" if parts else " (no SLO set: share completed)"


def streams_csv(streams: Sequence[StreamSample]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    fields = list(StreamSample.__dataclass_fields__)
    writer.writerow(fields)
    for s in sorted(streams, key=lambda s: s.started_at):
        writer.writerow(s.to_row())
    return buf.getvalue()


def summary_csv(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["metric", *(f"{c}_ms" if c != "count" else c for c in _COLUMNS)])
    for key, label in _METRIC_LABELS:
        stats = summary["metrics_ms"][key]
        writer.writerow([label, *(stats.get(c, "") for c in _COLUMNS)])
    return buf.getvalue()


# --- HTML ----------------------------------------------------------------------------------

_PANELS = (("ttft", "TTFT"), ("itl", "ITL"), ("tpot", "TPOT"), ("e2e", "E2E"))
_TIME_POINTS = 600  # at most this many windows on the time axis


def _distribution(hist: ExactHistogram) -> Distribution:
    pairs = hist.buckets(RESOLUTION_S)
    return Distribution([x * 1000 for x, _ in pairs], [c for _, c in pairs])


def _percentile_lines(hist: ExactHistogram) -> list[Line]:
    out = []
    for p in (50.0, 90.0, 99.0):
        value = hist.interpolated_percentile(p)
        if value is not None:
            out.append(Line(f"p{p:g}", value * 1000))
    return out


def _gate_lines(summary: dict[str, Any], metric: str) -> list[Line]:
    """The gates on ``metric``'s percentiles, as lines at their thresholds."""
    out = []
    for gate in summary.get("gates", []):
        path, direction, _ = GATE_SPECS.get(gate["name"], ((), "max", ""))
        if path[:2] == ("metrics_ms", metric):
            op = "<=" if direction == "max" else ">="
            out.append(Line(f"gate {path[2]} {op}", float(gate["threshold"])))
    return out


def _distribution_figures(metrics: LoadMetrics, summary: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for key, label in _PANELS:
        hist: ExactHistogram = getattr(metrics, key)
        if hist.count:
            series = {label: _distribution(hist)}
            panels.append((label, series, _percentile_lines(hist), _gate_lines(summary, key)))
    count = {"ttft": "streams", "itl": "gaps", "tpot": "streams", "e2e": "streams"}
    figures = []
    for i in range(0, len(panels), 2):
        pair = panels[i : i + 2]
        labels = [count[p[0].lower()] for p in pair]
        figures.append(distribution_figure(pair, count_label=labels, height=300))
    return figures


def _window(span: tuple[float, float]) -> float:
    return float(max(1, math.ceil((span[1] - span[0]) / _TIME_POINTS)))


def _per_window(stamps: Sequence[float], start: float, end: float, step: float) -> Series:
    """Events per second in windows of ``step`` s; the last window, cut short by the end of
    the run, is left out (its rate would read as a drop)."""
    n = max(1, int((end - start) // step))
    counts = [0] * n
    for t in stamps:
        i = int((t - start) // step)
        if 0 <= i < n:
            counts[i] += 1
    return Series("", [start + i * step for i in range(n)], [c / step for c in counts])


def _time_series(
    metrics: LoadMetrics, users: Sequence[tuple[float, int]]
) -> tuple[list[Series], list[str]]:
    span = metrics.time_span()
    if span is None:
        return [], []
    start, end = span
    step = _window(span)
    out: list[Series] = []
    if users:
        out.append(Series("users (Locust)", [t for t, _ in users], [u for _, u in users], 1, "hv"))
    tick = min(step, max(0.1, (end - start) / 100))
    active = metrics.active_streams(tick)
    out.append(Series("open streams", [start + t for t, _ in active], [n for _, n in active], 1))
    ended = [s.started_at + s.duration_s for s in metrics.streams if s.outcome != UNFINISHED]
    errors = [s.started_at + s.duration_s for s in metrics.streams
              if s.outcome in ERROR_OUTCOMES]  # fmt: skip
    for name, stamps in (("streams ended/s", ended), ("errors/s", errors)):
        series = _per_window(stamps, start, end, step)
        out.append(Series(name, series.times, series.values, 2, "hv"))
    seconds = sorted(metrics.tokens_per_second)
    if seconds:
        # the last second, cut short by the end of the run, would read as a drop
        every = range(seconds[0], min(seconds[-1] + 1, int(end)))
        tokens = [float(metrics.tokens_per_second.get(t, 0)) for t in every]
        out.append(Series("tokens/s", [float(t) for t in every], tokens, 3, "hv"))
    windows: dict[int, ExactHistogram] = {}
    for s in metrics.streams:
        if s.ttft_s is not None and s.outcome not in ERROR_OUTCOMES:
            windows.setdefault(int((s.started_at - start) // step), ExactHistogram()).add(s.ttft_s)
    for p in (50.0, 95.0):
        times, values = [], []
        for i in sorted(windows):
            value = windows[i].interpolated_percentile(p)
            if value is not None:
                times.append(start + (i + 0.5) * step)
                values.append(value * 1000)
        out.append(Series(f"TTFT p{p:g} (ms)", times, values, 4))
    rows = ["users, streams", "per second", "tokens/s", "TTFT (ms)"]
    return out, rows


def _banner(summary: dict[str, Any]) -> dict[str, str]:
    gates = summary.get("gates", [])
    failed = [g["name"] for g in gates if not g["passed"]]
    if not gates:
        word, kind, counts = "NO GATES", "none", "no gate was set: nothing to pass or fail"
    elif failed:
        word, kind = "FAIL", "fail"
        counts = f"{len(failed)} of {len(gates)} gates failed: {', '.join(failed)}"
    else:
        word, kind, counts = "PASS", "pass", f"all {len(gates)} gates passed"
    err = summary["error_rate"]
    tps = summary["tokens_per_s"]
    sub = (
        f"{summary['streams']} streams, error rate {'-' if err is None else f'{err:.2%}'}, "
        f"{summary['tokens']} tokens in {summary['duration_s']:.1f} s"
        + (f" ({tps:.0f} tokens/s)" if tps else "")
    )
    return {"word": word, "kind": kind, "counts": counts, "sub": sub}


def _metric_rows(summary: dict[str, Any]) -> list[list[str]]:
    return [
        [label, *(_cell(summary["metrics_ms"][key].get(c)) for c in _COLUMNS)]
        for key, label in _METRIC_LABELS
    ]


def _gate_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for g in summary.get("gates", []):
        _, direction, unit = GATE_SPECS.get(g["name"], ((), "max", ""))
        op = "<=" if direction == "max" else ">="
        actual = g["actual"]
        rows.append({
            "name": g["name"],
            "required": f"{op} {g['threshold']:g}{unit}",
            "actual": "no samples" if actual is None else f"{actual:.4g}{unit}",
            "passed": g["passed"],
        })  # fmt: skip
    return rows


def html_report(
    metrics: LoadMetrics,
    summary: dict[str, Any],
    *,
    title: str = "streamharness load report",
    command: str = "",
    locust_command: str = "",
    users: Sequence[tuple[float, int]] = (),
    locust_report: str | None = None,
) -> str:
    """The load report page. It loads ``plotly.min.js`` from its own folder
    (:func:`write_html_report` writes both). The gates are the summary's (``"gates"``, as
    ``loadtests.cli.judge`` puts them). ``users``: (epoch second, users) from Locust's
    stats history; ``locust_report``: the file name of Locust's own HTML report, linked."""
    series, rows = _time_series(metrics, users)
    facts = summary_table(summary).split("\n\n", 1)[-1].splitlines()
    context = {
        "title": title,
        "banner": _banner(summary),
        "columns": ["metric (ms)", *_COLUMNS],
        "metric_rows": _metric_rows(summary),
        "gate_rows": _gate_rows(summary),
        "facts": [f for f in facts if not f.startswith("warning")],
        "warnings": [f for f in facts if f.startswith("warning")],
        "distributions": _distribution_figures(metrics, summary),
        "over_time": time_series_figure(series, row_titles=rows) if series else None,
        "definitions": summary["definitions"],
        "command": command,
        "locust_command": locust_command,
        "locust_report": locust_report,
    }
    return render_page("loadtests", "load.html.j2", context)


def users_over_time(history_csv: str) -> list[tuple[float, int]]:
    """(epoch second, users) from Locust's ``<prefix>_stats_history.csv`` (its "Aggregated"
    rows: one a second while the test ran)."""
    out = []
    for row in csv.DictReader(io.StringIO(history_csv)):
        if row.get("Name") != "Aggregated":
            continue
        try:
            out.append((float(row["Timestamp"]), int(row["User Count"])))
        except (KeyError, TypeError, ValueError):
            continue  # a row cut by the end of the run
    return out


def write_html_report(
    folder: Path,
    metrics: LoadMetrics,
    summary: dict[str, Any],
    *,
    command: str = "",
    locust_command: str = "",
    users: Sequence[tuple[float, int]] = (),
    locust_report: str | None = None,
) -> Path:
    """``report.html`` and the ``plotly.min.js`` it loads, in ``folder``."""
    path = folder / "report.html"
    page = html_report(
        metrics,
        summary,
        command=command,
        locust_command=locust_command,
        users=users,
        locust_report=locust_report,
    )
    path.write_text(page, encoding="utf-8")
    write_plotly_js(folder)
    return path
