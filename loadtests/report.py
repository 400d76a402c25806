"""Reports of a load run (pure): terminal table, CSV, and an HTML page with inline SVG plots.

No plotting library: the four plots (TTFT histogram, ITL distribution, active streams and
tokens/s over time) are a few dozen lines of SVG, so the report is one self-contained file.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtests.metrics import LoadMetrics, StreamSample

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


def _svg_bars(
    points: Sequence[tuple[float, float]], *, title: str, xlabel: str, ylabel: str, width_x: float
) -> str:
    w, h, pad = 560, 220, 44
    if not points:
        return f"<figure><figcaption>{html.escape(title)}: no data</figcaption></figure>"
    xs = [p[0] for p in points]
    x0, x1 = min(xs), max(xs) + width_x
    ymax = max(p[1] for p in points) or 1
    sx = (w - 2 * pad) / ((x1 - x0) or 1)
    sy = (h - 2 * pad) / ymax
    bars = []
    for x, y in points:
        bx = pad + (x - x0) * sx
        bw = max(1.0, width_x * sx - 1)
        bh = y * sy
        bars.append(
            f'<rect x="{bx:.1f}" y="{h - pad - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
            f'fill="#4a7bd0"><title>{x:g}: {y:g}</title></rect>'
        )
    return _frame(w, h, pad, title, xlabel, ylabel, x0, x1, ymax, "".join(bars))


def _svg_line(
    points: Sequence[tuple[float, float]], *, title: str, xlabel: str, ylabel: str
) -> str:
    w, h, pad = 560, 220, 44
    if not points:
        return f"<figure><figcaption>{html.escape(title)}: no data</figcaption></figure>"
    x0, x1 = points[0][0], points[-1][0]
    ymax = max(p[1] for p in points) or 1
    sx = (w - 2 * pad) / ((x1 - x0) or 1)
    sy = (h - 2 * pad) / ymax
    path = " ".join(f"{pad + (x - x0) * sx:.1f},{h - pad - y * sy:.1f}" for x, y in points)
    body = f'<polyline fill="none" stroke="#d0604a" stroke-width="2" points="{path}"/>'
    return _frame(w, h, pad, title, xlabel, ylabel, x0, x1, ymax, body)


def _frame(
    w: int, h: int, pad: int, title: str, xlabel: str, ylabel: str,
    x0: float, x1: float, ymax: float, body: str,
) -> str:  # fmt: skip
    axes = (
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#333"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#333"/>'
        f'<text x="{pad}" y="{h - pad + 14}" font-size="11">{x0:g}</text>'
        f'<text x="{w - pad}" y="{h - pad + 14}" font-size="11" text-anchor="end">{x1:g}</text>'
        f'<text x="{w / 2}" y="{h - 8}" font-size="12" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
        f'<text x="{pad - 4}" y="{pad}" font-size="11" text-anchor="end">{ymax:g}</text>'
        f'<text x="12" y="{h / 2}" font-size="12" transform="rotate(-90 12 {h / 2})" '
        f'text-anchor="middle">{html.escape(ylabel)}</text>'
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'role="img" aria-label="{html.escape(title)}">{axes}{body}</svg>'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
    )


def _nice_width(max_ms: float, bins: int = 40) -> float:
    raw = max(max_ms / bins, 0.01)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return float(m * mag)
    return float(10 * mag)


def html_report(
    metrics: LoadMetrics,
    summary: dict[str, Any],
    *,
    title: str = "streamharness load report",
    gates: Sequence[str] = (),
    command: str = "",
) -> str:
    ttft_max = (metrics.ttft.interpolated_percentile(99.5) or 0) * 1000
    itl_max = (metrics.itl.interpolated_percentile(99.5) or 0) * 1000
    tw, iw = _nice_width(ttft_max), _nice_width(itl_max)
    ttft_pts = [(x * 1000, c) for x, c in metrics.ttft.buckets(tw / 1000) if x * 1000 <= ttft_max]
    itl_pts = [(x * 1000, c) for x, c in metrics.itl.buckets(iw / 1000) if x * 1000 <= itl_max]
    span = metrics.time_span()
    step = min(5.0, max(0.1, (span[1] - span[0]) / 100)) if span else 1.0
    active = [(float(t), float(n)) for t, n in metrics.active_streams(step)]
    tps: list[tuple[float, float]] = []
    if span:
        start = int(span[0])
        tps = [(float(s - start), float(metrics.tokens_per_second.get(s, 0)))
               for s in range(start, int(span[1]) + 1)]  # fmt: skip
    plots = [
        _svg_bars(ttft_pts, title="TTFT histogram (to p99.5)", xlabel="ms", ylabel="streams",
                  width_x=tw),
        _svg_bars(itl_pts, title="ITL distribution, all gaps pooled (to p99.5)", xlabel="ms",
                  ylabel="gaps", width_x=iw),
        _svg_line(active, title="active streams over time", xlabel="s", ylabel="streams"),
        _svg_line(tps, title="tokens/s over time", xlabel="s", ylabel="tokens/s"),
    ]  # fmt: skip
    gate_html = "".join(f"<li>{html.escape(g)}</li>" for g in gates) or "<li>none</li>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}
pre{{background:#f4f4f4;padding:1em}} figure{{display:inline-block;margin:0.5em}}
figcaption{{text-align:center;font-size:0.9em}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p><code>{html.escape(command)}</code></p>
<pre>{html.escape(summary_table(summary))}</pre>
<h2>Gates</h2><ul>{gate_html}</ul>
<h2>Plots</h2>
{"".join(plots)}
<h2>Definitions</h2><ul>
{"".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in summary["definitions"].items())}
</ul>
<h2>Summary (JSON)</h2><pre>{html.escape(json.dumps(summary, indent=2))}</pre>
</body></html>
"""


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
    gates: Sequence[str] = (),
    command: str = "",
    locust_command: str = "",
    users: Sequence[tuple[float, int]] = (),
    locust_report: str | None = None,
) -> Path:
    path = folder / "report.html"
    path.write_text(html_report(metrics, summary, gates=gates, command=command), encoding="utf-8")
    return path
