"""Results of scenario runs and their reports: JSON, JUnit XML, text and HTML.

Writers are pure (results in, strings out); ``write_reports`` only puts those strings in files.
The text and HTML reports draw a token-arrival timeline per stream, the fault schedule on the
same axis, and the reason of each failed check, so a failure can be read without a debugger.
The HTML page itself is built in :mod:`scenarios.report_html`.
"""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from scenarios.checks import Arrival, CheckResult, StreamObservation
from scenarios.htmlreport.page import write_plotly_js

__all__ = [
    "Bound",
    "RunSummary",
    "ScenarioResult",
    "TimelineEvent",
    "render_html",
    "render_json",
    "render_junit",
    "render_scenario_text",
    "render_table",
    "render_text",
    "summary_from_dict",
    "write_reports",
]

Verdict = Literal["pass", "fail", "skip", "error"]


@dataclass(frozen=True)
class TimelineEvent:
    """Something the harness did during a run (a toxic added or removed, a server restart)."""

    t: float  # seconds since the scenario's clients started
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"t_ms": round(self.t * 1000, 1), "what": self.what}


@dataclass(frozen=True)
class Bound:
    """A limit a scenario's band check puts on a latency: the report draws it on the plot."""

    metric: Literal["ttft", "itl", "e2e"]
    label: str  # the rule without its value: "ttft p95 <="
    value_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "label": self.label, "value_ms": self.value_ms}


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    target: str
    seed: int
    verdict: Verdict
    reason: str = ""  # why it failed, was skipped or errored (one line per cause)
    description: str = ""
    expected: Literal["pass", "fail"] | None = None
    checks: tuple[CheckResult, ...] = ()
    streams: tuple[StreamObservation, ...] = ()
    events: tuple[TimelineEvent, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    replay: str = ""  # the exact command that replays this run
    # The seeded plan: sub-seeds, each fault with its drawn delay, each client's timing.
    schedule: tuple[str, ...] = ()
    logs: dict[str, str] = field(default_factory=dict)  # process name -> log file
    bounds: tuple[Bound, ...] = ()  # the latency limits its checks set
    # client group name -> its browser page's final screenshot (PNG), for browser groups
    screenshots: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool | None:
        """Whether the verdict is the one the scenario expects of this target (None: no opinion)."""
        if self.expected is None or self.verdict not in ("pass", "fail"):
            return None
        return self.verdict == self.expected

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "target": self.target,
            "seed": self.seed,
            "verdict": self.verdict,
            "expected": self.expected,
            "as_expected": self.as_expected,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 3),
            "replay": self.replay,
            "schedule": list(self.schedule),
            "figures": self.figures,
            "checks": [c.to_dict() for c in self.checks],
            "events": [e.to_dict() for e in self.events],
            "streams": [_stream_dict(s) for s in self.streams],
            "logs": self.logs,
            "bounds": [b.to_dict() for b in self.bounds],
            "screenshots": {
                name: base64.b64encode(png).decode("ascii")
                for name, png in self.screenshots.items()
            },
        }


def _stream_dict(s: StreamObservation) -> dict[str, Any]:
    return {
        "key": s.key,
        "group": s.group,
        "client": s.client,
        "message": s.message,
        "transport": s.transport,
        "prompt": s.prompt,
        "outcome": s.outcome,
        "finish_reason": s.finish_reason,
        "error_code": s.error_code,
        "error_retryable": s.error_retryable,
        "close_code": s.close_code,
        "attempts": s.attempts,
        "tokens": len(s.arrivals),
        "sent_ms": round(s.sent_t * 1000, 2),
        "ttft_ms": None if s.ttft_s is None else round(s.ttft_s * 1000, 2),
        "e2e_ms": None if s.e2e_s is None else round(s.e2e_s * 1000, 2),
        "ended_ms": None if s.ended_t is None else round(s.ended_t * 1000, 2),
        "text": s.text,
        "expected_text": s.expected_text,
        "notes": list(s.notes),
        **_page_dict(s),
        "arrivals": [
            {"index": a.index, "t_ms": round(a.t * 1000, 2), "content": a.content}
            for a in s.arrivals
        ],
    }


def _page_dict(s: StreamObservation) -> dict[str, Any]:
    """A browser page's view of the stream: what it showed over time and what it saved."""
    if s.page is None:
        return {}
    return {
        "page": s.page,
        "saved_text": s.saved_text,
        "shown": [{"t_ms": round(t * 1000, 2), "text": text} for t, text in s.shown],
    }


def _stream_from(d: Mapping[str, Any]) -> StreamObservation:
    def s(ms: float | None) -> float | None:
        return None if ms is None else ms / 1000

    return StreamObservation(
        key=d["key"],
        group=d["group"],
        client=d["client"],
        message=d["message"],
        prompt=d["prompt"],
        transport=d["transport"],
        arrivals=tuple(Arrival(a["index"], a["content"], a["t_ms"] / 1000) for a in d["arrivals"]),
        outcome=d["outcome"],
        finish_reason=d["finish_reason"],
        error_code=d["error_code"],
        error_retryable=d["error_retryable"],
        close_code=d["close_code"],
        ended_t=s(d["ended_ms"]),
        sent_t=d["sent_ms"] / 1000,
        attempts=d["attempts"],
        expected_text=d["expected_text"],
        notes=tuple(d["notes"]),
        page=d.get("page"),
        saved_text=d.get("saved_text"),
        shown=tuple((x["t_ms"] / 1000, x["text"]) for x in d.get("shown", ())),
    )


def summary_from_dict(data: Mapping[str, Any]) -> RunSummary:
    """A run read back from its ``report.json`` (to draw its reports again); the token times
    are those of the file, rounded to 0.01 ms."""
    results = []
    for r in data["results"]:
        results.append(
            ScenarioResult(
                scenario=r["scenario"],
                target=r["target"],
                seed=r["seed"],
                verdict=r["verdict"],
                reason=r["reason"],
                description=r["description"],
                expected=r["expected"],
                checks=tuple(
                    CheckResult(c["check"], c["passed"], c["reason"], c.get("applicable", True))
                    for c in r["checks"]
                ),
                streams=tuple(_stream_from(s) for s in r["streams"]),
                events=tuple(TimelineEvent(e["t_ms"] / 1000, e["what"]) for e in r["events"]),
                figures=r["figures"],
                duration_s=r["duration_s"],
                replay=r["replay"],
                schedule=tuple(r["schedule"]),
                logs=r["logs"],
                bounds=tuple(Bound(b["metric"], b["label"], b["value_ms"]) for b in r["bounds"]),
                screenshots={
                    name: base64.b64decode(png)
                    for name, png in (r.get("screenshots") or {}).items()
                },
            )
        )
    return RunSummary(
        target=data["target"],
        seed=data["seed"],
        results=tuple(results),
        duration_s=data["duration_s"],
        command=data["command"],
        expectations=data["expectations"],
    )


@dataclass(frozen=True)
class RunSummary:
    target: str
    seed: int
    results: tuple[ScenarioResult, ...]
    duration_s: float
    command: str = ""
    # judged by expectations (--expectations): a verdict is good when it is the expected one
    expectations: bool = False

    def count(self, verdict: Verdict) -> int:
        return sum(1 for r in self.results if r.verdict == verdict)

    @property
    def bad(self) -> list[ScenarioResult]:
        """The runs that make the whole run fail (the exit code 1 of ``streamharness run``)."""
        if self.expectations:
            return [r for r in self.results if r.verdict == "error" or r.as_expected is False]
        return [r for r in self.results if r.verdict in ("fail", "error")]


# ------------------------------------------------------------------------------------ JSON


def render_json(summary: RunSummary) -> str:
    data = {
        "target": summary.target,
        "seed": summary.seed,
        "command": summary.command,
        "duration_s": round(summary.duration_s, 3),
        "expectations": summary.expectations,
        "totals": {v: summary.count(v) for v in ("pass", "fail", "skip", "error")},
        "results": [r.to_dict() for r in summary.results],
    }
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


# ------------------------------------------------------------------------------- JUnit XML


def render_junit(summary: RunSummary) -> str:
    """JUnit XML as Jenkins, GitLab and GitHub test reporters read it: one testcase per run of a
    scenario, a <failure> for a failed verdict, <error> for a harness error, <skipped>."""
    suite = ET.Element(
        "testsuite",
        {
            "name": f"streamharness.{_target_slug(summary.target)}",
            "tests": str(len(summary.results)),
            "failures": str(summary.count("fail")),
            "errors": str(summary.count("error")),
            "skipped": str(summary.count("skip")),
            "time": f"{summary.duration_s:.3f}",
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", summary.target), ("seed", str(summary.seed))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for r in summary.results:
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"scenarios.{_target_slug(r.target)}",
                "name": f"{r.scenario}[seed={r.seed}]",
                "time": f"{r.duration_s:.3f}",
            },
        )
        if r.verdict == "fail":
            failed = [c for c in r.checks if not c.passed]
            message = r.reason or "; ".join(f"{c.check}: {c.reason}" for c in failed)
            node = ET.SubElement(case, "failure", {"message": message, "type": "ScenarioFailed"})
            node.text = render_scenario_text(r)
        elif r.verdict == "error":
            node = ET.SubElement(case, "error", {"message": r.reason, "type": "HarnessError"})
            node.text = render_scenario_text(r)
        elif r.verdict == "skip":
            ET.SubElement(case, "skipped", {"message": r.reason})
        out = ET.SubElement(case, "system-out")
        out.text = f"expected: {r.expected or 'n/a'}\nreplay: {r.replay}\n"
    root = ET.Element("testsuites", {"name": "streamharness"})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def _target_slug(target: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in target).strip("_") or "target"


# ------------------------------------------------------------------------------------ text

TIMELINE_WIDTH = 60


def _span(r: ScenarioResult) -> float:
    ends = [s.sent_t + a.t for s in r.streams for a in s.arrivals] + [e.t for e in r.events]
    ends += [s.sent_t + s.ended_t for s in r.streams if s.ended_t is not None]
    return max([*ends, 0.001])


def _column(t: float, span: float) -> int:
    return min(TIMELINE_WIDTH - 1, max(0, int(t / span * TIMELINE_WIDTH)))


def _timeline_row(s: StreamObservation, span: float) -> str:
    counts = [0] * TIMELINE_WIDTH
    for a in s.arrivals:
        counts[_column(s.sent_t + a.t, span)] += 1
    cells = ["." if n == 0 else (str(n) if n < 10 else "#") for n in counts]
    cells[_column(s.sent_t, span)] = (
        ">" if counts[_column(s.sent_t, span)] == 0 else cells[_column(s.sent_t, span)]
    )
    if s.ended_t is not None:
        col = _column(s.sent_t + s.ended_t, span)
        if counts[col] == 0:
            cells[col] = {"completed": "|", "cancelled": "c", "error": "E"}.get(s.outcome, "x")
    return "".join(cells)


def render_scenario_text(r: ScenarioResult, max_streams: int = 40) -> str:
    expected = f", expected {r.expected}" if r.expected else ""
    lines = [
        f"== {r.scenario} on {r.target}: {r.verdict.upper()}{expected} "
        f"(seed {r.seed}, {r.duration_s:.2f} s)",
    ]
    if r.description:
        lines.append(f"   {r.description.strip()}")
    if r.reason:
        lines += [f"   reason: {line}" for line in r.reason.splitlines()]
    for c in r.checks:
        mark = "n/a" if not c.applicable else "ok" if c.passed else "FAIL"
        lines.append(f"   [{mark}] {c.check}: {c.reason}")
    if r.figures:
        lines.append("   figures: " + ", ".join(f"{k}={v}" for k, v in r.figures.items()))
    if r.schedule:
        lines.append("   plan: " + "; ".join(r.schedule[:8]))
    if r.streams or r.events:
        span = _span(r)
        lines.append(
            f"   timeline (0 .. {span * 1000:.0f} ms, {span * 1000 / TIMELINE_WIDTH:.1f} ms per "
            "column; > sent, digit = tokens arrived, | end, c cancelled, E error, x cut off):"
        )
        width = max([len(s.key) for s in r.streams] + [6])
        if r.events:
            marks = ["-"] * TIMELINE_WIDTH
            for e in r.events:
                marks[_column(e.t, span)] = "^"
            lines.append(f"   {'faults'.ljust(width)} {''.join(marks)}")
        for s in r.streams[:max_streams]:
            lines.append(
                f"   {s.key.ljust(width)} {_timeline_row(s, span)} {len(s.arrivals):>4} tok "
                f"{s.describe()}"
            )
        if len(r.streams) > max_streams:
            lines.append(f"   ... and {len(r.streams) - max_streams} more streams")
        for e in r.events:
            lines.append(f"   at {e.t * 1000:7.1f} ms: {e.what}")
        for s in r.streams:
            for note in s.notes:
                lines.append(f"   {s.key}: {note}")
    if r.verdict in ("fail", "error") and r.replay:
        lines.append(f"   replay: {r.replay}")
    return "\n".join(lines) + "\n"


def render_text(summary: RunSummary) -> str:
    parts = [render_table(summary), ""]
    parts += [render_scenario_text(r) for r in summary.results]
    return "\n".join(parts)


def _expectation(r: ScenarioResult) -> str:
    if r.expected is None:
        return "-"
    if r.as_expected is None:
        return f"want {r.expected}"
    return "as expected" if r.as_expected else f"UNEXPECTED (want {r.expected})"


def render_table(summary: RunSummary) -> str:
    header = ("scenario", "seed", "verdict", "expected", "completed", "TTFT p50", "ITL p50", "time")
    rows = [header]
    for r in summary.results:
        f = r.figures
        rows.append(
            (
                r.scenario,
                str(r.seed),
                r.verdict.upper(),
                _expectation(r),
                f"{f.get('completed', 0)}/{f.get('streams', 0)}" if f else "-",
                f"{f['ttft_p50_ms']:.0f} ms" if "ttft_p50_ms" in f else "-",
                f"{f['itl_p50_ms']:.1f} ms" if "itl_p50_ms" in f else "-",
                f"{r.duration_s:.1f} s",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    totals = ", ".join(
        f"{summary.count(v)} {v}" for v in ("pass", "fail", "skip", "error") if summary.count(v)
    )
    lines.append(
        f"{len(summary.results)} runs on {summary.target} (seed {summary.seed}): {totals or 'none'}"
        f" in {summary.duration_s:.1f} s"
    )
    return "\n".join(line.rstrip() for line in lines)


# ------------------------------------------------------------------------------------ HTML


def render_html(summary: RunSummary) -> str:
    """The HTML report (:mod:`scenarios.report_html`); it loads ``plotly.min.js`` from its own
    folder, which :func:`write_reports` writes."""
    from scenarios.report_html import render_html as render  # it imports this module

    return render(summary)


# ---------------------------------------------------------------------------------- files


def write_reports(summary: RunSummary, directory: Path | str) -> list[Path]:
    """Write report.json, junit.xml, report.txt, report.html (with plotly.min.js beside it) and
    one text file per scenario run (``<scenario>-<seed>.txt``). Returns the paths written."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in (
        ("report.json", render_json(summary)),
        ("junit.xml", render_junit(summary)),
        ("report.txt", render_text(summary)),
        ("report.html", render_html(summary)),
    ):
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    written.append(write_plotly_js(folder))
    for r in summary.results:
        path = folder / f"{r.scenario}-{r.seed}.txt"
        path.write_text(render_scenario_text(r, max_streams=10_000), encoding="utf-8")
        written.append(path)
    return written


def summarise_failures(results: Sequence[ScenarioResult]) -> list[str]:
    """One block per failed or errored run: its reasons, the seed and the replay command."""
    out = []
    for r in results:
        if r.verdict not in ("fail", "error"):
            continue
        reasons = [f"{c.check}: {c.reason}" for c in r.checks if not c.passed]
        if r.reason and not reasons:  # a failed run's reason is its failed checks, joined
            reasons = [r.reason]
        block = [f"FAILED {r.scenario} on {r.target} (seed {r.seed})"]
        block += [f"  - {line}" for line in reasons]
        block.append(f"  replay: {r.replay}")
        out.append("\n".join(block))
    return out
