"""The scenario report as an HTML page (pure: a summary in, a string out).

It reads like a verdict: a PASS/FAIL banner with the counts, then a table of every run with
failures first, then errors, passes and skips, each linked to its section. Each section has the
failure's reason, the checks, a swim-lane timeline of its streams (a tick per token, hover for
index, time and text) and its TTFT and ITL distributions per transport, with the limits its
checks set drawn on them. Above the sections, TTFT and ITL percentiles of every scenario and
of every transport. The page is ``templates/report.html.j2``; plots are Plotly figures
(:mod:`scenarios.htmlreport.plots`) drawn by the ``plotly.min.js`` written beside the page.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from typing import Any

from mockllm.percentiles import percentile
from scenarios.checks import StreamObservation
from scenarios.htmlreport.page import render_page
from scenarios.htmlreport.plots import (
    Distribution,
    Lane,
    Line,
    distribution_figure,
    percentile_rows_figure,
    timeline_figure,
)
from scenarios.report import RunSummary, ScenarioResult

__all__ = ["MAX_LANES", "MAX_MARKS", "lane_label", "render_html"]

MAX_LANES = 60
"""Streams drawn per timeline; the rest are counted under it."""
MAX_MARKS = 1000
"""Token marks per stream: a longer stream gets one mark per run of consecutive tokens."""
_ORDER = {"fail": 0, "error": 1, "pass": 2, "skip": 3}
_GROUP = re.compile(r"g(\d+)")


def lane_label(s: StreamObservation) -> str:
    """``g0/c1/m2`` as "group 0 · client 1 · msg 2" (a named group keeps its name)."""
    numbered = _GROUP.fullmatch(s.group)
    group = f"group {numbered.group(1)}" if numbered else s.group
    return f"{group} · client {s.client} · msg {s.message}"


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _token_text(content: str, limit: int = 40) -> str:
    shown = repr(content if len(content) <= limit else content[:limit] + "…")
    return html.escape(shown)  # Plotly reads hover text as HTML


def _lane(s: StreamObservation) -> tuple[Lane, int]:
    """The stream's row and how many tokens each mark stands for (1 unless thinned)."""
    label = lane_label(s)
    step = max(1, math.ceil(len(s.arrivals) / MAX_MARKS))
    marks: list[float] = []
    hover: list[str] = []
    for i in range(0, len(s.arrivals), step):
        run = s.arrivals[i : i + step]
        first, last = run[0], run[-1]
        at = _ms(s.sent_t + first.t)
        marks.append(at)
        if step == 1:
            hover.append(
                f"{label}<br>token #{first.index} at {at:.1f} ms "
                f"({_ms(first.t):.1f} ms after the request)<br>{_token_text(first.content)}"
            )
        else:
            text = "".join(a.content for a in run)
            hover.append(
                f"{label}<br>tokens #{first.index}..#{last.index} ({len(run)}) at "
                f"{at:.1f}..{_ms(s.sent_t + last.t):.1f} ms<br>{_token_text(text)}"
            )
    ok = s.outcome in ("completed", "cancelled")
    end_ms = None if s.ended_t is None else _ms(s.sent_t + s.ended_t)
    lane = Lane(
        label=label,
        sent_ms=_ms(s.sent_t),
        marks_ms=marks,
        hover=hover,
        ok=ok,
        end_ms=end_ms,
        end=s.outcome if s.ended_t is not None else "",
        end_hover=f"{label}: {html.escape(s.describe())}",
    )
    return lane, step


def _timeline(r: ScenarioResult) -> tuple[dict[str, Any], str] | None:
    if not r.streams:
        return None
    lanes, steps = zip(*(_lane(s) for s in r.streams[:MAX_LANES]), strict=True)
    faults = [(_ms(e.t), html.escape(e.what)) for e in r.events]
    fig = timeline_figure(lanes, faults, x_title="time since the scenario's clients started (ms)")
    notes = [
        "One row per stream: “group 0 · client 1 · msg 2” is the third message of the second "
        "client of the scenario's first client group; a tick per token as it arrived."
    ]
    if max(steps) > 1:
        notes.append(
            f"Streams of more than {MAX_MARKS:,} tokens get one tick per run of consecutive "
            f"tokens (up to {max(steps):,}); hover says which."
        )
    if len(r.streams) > MAX_LANES:
        notes.append(f"The first {MAX_LANES} of {len(r.streams)} streams are drawn.")
    return fig, " ".join(notes)


def _ttfts(streams: Sequence[StreamObservation]) -> list[float]:
    return [_ms(s.ttft_s) for s in streams if s.ttft_s is not None]


def _gaps(streams: Sequence[StreamObservation]) -> list[float]:
    return [_ms(g) for s in streams for g in s.gaps_s]


def _markers(values: Sequence[float]) -> list[Line]:
    return [Line(f"p{p}", percentile(values, p)) for p in (50, 90, 99)] if values else []


def _by_transport(streams: Sequence[StreamObservation]) -> dict[str, list[StreamObservation]]:
    out: dict[str, list[StreamObservation]] = {}
    for s in streams:
        out.setdefault(s.transport, []).append(s)
    return out


def _distributions(r: ScenarioResult) -> dict[str, Any] | None:
    groups = _by_transport(r.streams)
    panels = []
    for metric, title, values_of in (("ttft", "TTFT", _ttfts), ("itl", "ITL", _gaps)):
        series = {t: Distribution(values_of(ss)) for t, ss in groups.items() if values_of(ss)}
        if not series:
            continue
        pooled = values_of(r.streams)
        limits = [Line(b.label, b.value_ms) for b in r.bounds if b.metric == metric]
        panels.append((title, series, _markers(pooled), limits))
    if not panels:
        return None
    labels = ["streams" if title == "TTFT" else "gaps" for title, *_ in panels]
    return distribution_figure(panels, count_label=labels, height=280)


def _overview(rows: Sequence[tuple[str, Sequence[StreamObservation]]]) -> dict[str, Any] | None:
    ttft = [(label, _ttfts(ss)) for label, ss in rows]
    itl = [(label, _gaps(ss)) for label, ss in rows]
    if not any(v for _, v in ttft) and not any(v for _, v in itl):
        return None
    return percentile_rows_figure(
        [("TTFT", [x for x in ttft if x[1]]), ("ITL", [x for x in itl if x[1]])],
        percentile=percentile,
    )


def _banner(summary: RunSummary) -> dict[str, Any]:
    counts = {v: summary.count(v) for v in ("fail", "error", "pass", "skip")}
    if not summary.results:
        word, kind = "NO RUNS", "none"
    else:
        word, kind = ("FAIL", "fail") if summary.bad else ("PASS", "pass")
    parts = [f"{counts['fail']} failed", f"{counts['error']} errors", f"{counts['pass']} passed",
             f"{counts['skip']} skipped"]  # fmt: skip
    judged = [r for r in summary.results if r.as_expected is not None]
    if summary.expectations:
        good = sum(1 for r in judged if r.as_expected)
        parts.append(f"{good} of {len(judged)} as expected")
    return {"word": word, "kind": kind, "counts": " · ".join(parts)}


def _row(i: int, r: ScenarioResult) -> dict[str, Any]:
    f = r.figures
    expected = "-"
    if r.as_expected is not None:
        expected = "as expected" if r.as_expected else f"UNEXPECTED (want {r.expected})"
    elif r.expected is not None:
        expected = f"want {r.expected}"
    reason = r.reason.splitlines()[0] if r.reason else ""
    return {
        "anchor": f"run-{i}",
        "result": r,
        "expected": expected,
        "unexpected": r.as_expected is False,
        "completed": f"{f.get('completed', 0)}/{f.get('streams', 0)}" if f else "-",
        "ttft": f"{f['ttft_p50_ms']:.0f} ms" if "ttft_p50_ms" in f else "-",
        "itl": f"{f['itl_p50_ms']:.1f} ms" if "itl_p50_ms" in f else "-",
        "reason": reason if len(reason) <= 160 else reason[:159] + "…",
    }


def _section(i: int, r: ScenarioResult) -> dict[str, Any]:
    timeline = _timeline(r)
    return {
        **_row(i, r),
        "timeline": timeline[0] if timeline else None,
        "timeline_caption": timeline[1] if timeline else "",
        "distributions": _distributions(r),
        "events": [(f"{_ms(e.t):.0f} ms", e.what) for e in r.events],
        "notes": [f"{lane_label(s)}: {n}" for s in r.streams for n in s.notes],
        # Browser groups' final screenshots, embedded: the page opens with no file beside it.
        "screenshots": [
            (name, "data:image/png;base64," + base64.b64encode(png).decode("ascii"))
            for name, png in r.screenshots.items()
        ],
    }


def render_html(summary: RunSummary) -> str:
    ordered = sorted(
        enumerate(summary.results),
        key=lambda ir: (_ORDER[ir[1].verdict], ir[1].as_expected is not False, ir[0]),
    )
    with_streams = [(f"{r.scenario} (seed {r.seed})" if _repeated(summary, r) else r.scenario,
                     r.streams) for _, r in ordered if r.streams]  # fmt: skip
    transports: dict[str, list[StreamObservation]] = {}
    for r in summary.results:
        for t, ss in _by_transport(r.streams).items():
            transports.setdefault(t, []).extend(ss)
    context = {
        "title": f"streamharness: {summary.target}, seed {summary.seed}",
        "summary": summary,
        "banner": _banner(summary),
        "rows": [_row(i, r) for i, r in ordered],
        "sections": [_section(i, r) for i, r in ordered],
        "by_scenario": _overview(with_streams),
        "by_transport": _overview(sorted(transports.items())),
    }
    return render_page("scenarios", "report.html.j2", context)


def _repeated(summary: RunSummary, r: ScenarioResult) -> bool:
    return sum(1 for x in summary.results if x.scenario == r.scenario) > 1
