"""Report writers on synthetic results: JSON, JUnit XML, text with timeline, HTML."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from scenarios.checks import Arrival, CheckResult, StreamObservation
from scenarios.report import (
    Bound,
    RunSummary,
    ScenarioResult,
    TimelineEvent,
    render_html,
    render_json,
    render_junit,
    render_scenario_text,
    render_table,
    summarise_failures,
    summary_from_dict,
    write_reports,
)


def _stream(key: str, n: int, outcome: str = "completed") -> StreamObservation:
    return StreamObservation(
        key=key,
        group="g0",
        client=0,
        message=0,
        prompt="p <&>",
        transport="ws",
        arrivals=tuple(Arrival(i, f"t{i}", 0.05 + i * 0.01) for i in range(n)),
        outcome=outcome,
        ended_t=0.05 + n * 0.01,
        close_code=1006 if outcome == "disconnected" else None,
    )


def summary() -> RunSummary:
    passed = ScenarioResult(
        scenario="concurrency",
        target="reference",
        seed=7,
        verdict="pass",
        expected="pass",
        checks=(CheckResult("every stream ended", True, "2 streams ended"),),
        streams=(_stream("g0/c0/m0", 5), _stream("g0/c1/m0", 5)),
        figures={"streams": 2, "completed": 2, "ttft_p50_ms": 50.0, "itl_p50_ms": 10.0},
        duration_s=1.25,
        replay="streamharness replay 7 concurrency",
    )
    failed = ScenarioResult(
        scenario="nginx_idle",
        target="reference",
        seed=7,
        verdict="fail",
        expected="pass",
        reason="every stream ended: 1 of 1 streams: g0/c0/m0 disconnected",  # as the runner joins
        checks=(
            CheckResult("every stream ended", False, "1 of 1 streams: g0/c0/m0 disconnected"),
            CheckResult("no leaks", True, "not applicable: no /stats", applicable=False),
            CheckResult("ttft", True, "ok"),
        ),
        streams=(_stream("g0/c0/m0", 3, "disconnected"),),
        events=(TimelineEvent(0.06, "reset_peer added on downstream <proxy>"),),
        figures={"streams": 1, "completed": 0},
        duration_s=2.0,
        replay="streamharness replay 7 nginx_idle",
    )
    skipped = ScenarioResult(
        scenario="sse_resume",
        target="reference",
        seed=7,
        verdict="skip",
        reason="nginx is not installed (/usr/sbin/nginx missing)",
    )
    errored = ScenarioResult(
        scenario="broken", target="reference", seed=7, verdict="error", reason="mock did not start"
    )
    return RunSummary("reference", 7, (passed, failed, skipped, errored), 3.5, "streamharness run")


def test_json_round_trips_every_field() -> None:
    data = json.loads(render_json(summary()))
    assert data["totals"] == {"pass": 1, "fail": 1, "skip": 1, "error": 1}
    first = data["results"][0]
    assert first["verdict"] == "pass" and first["as_expected"] is True
    assert first["streams"][0]["arrivals"][1] == {"index": 1, "t_ms": 60.0, "content": "t1"}
    assert data["results"][1]["events"] == [
        {"t_ms": 60.0, "what": "reset_peer added on downstream <proxy>"}
    ]
    assert data["results"][1]["replay"] == "streamharness replay 7 nginx_idle"


def test_junit_has_one_testcase_per_run_and_the_right_kinds() -> None:
    root = ET.fromstring(render_junit(summary()))
    suite = root.find("testsuite")
    assert suite is not None
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        "4",
        "1",
        "1",
        "1",
    )
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {
        "concurrency[seed=7]",
        "nginx_idle[seed=7]",
        "sse_resume[seed=7]",
        "broken[seed=7]",
    }
    failure = cases["nginx_idle[seed=7]"].find("failure")
    assert failure is not None
    assert "every stream ended: 1 of 1 streams" in (failure.get("message") or "")
    assert "replay: streamharness replay 7 nginx_idle" in (failure.text or "")
    skipped = cases["sse_resume[seed=7]"].find("skipped")
    assert skipped is not None and "nginx is not installed" in (skipped.get("message") or "")
    assert cases["broken[seed=7]"].find("error") is not None
    assert cases["concurrency[seed=7]"].find("failure") is None


def test_text_report_has_timeline_reasons_and_replay() -> None:
    text = render_scenario_text(summary().results[1])
    assert "== nginx_idle on reference: FAIL, expected pass (seed 7, 2.00 s)" in text
    assert "[FAIL] every stream ended: 1 of 1 streams" in text
    assert "[ok] ttft: ok" in text
    assert "[n/a] no leaks: not applicable: no /stats" in text
    assert "replay: streamharness replay 7 nginx_idle" in text
    timeline = [line for line in text.splitlines() if line.strip().startswith("g0/c0/m0")]
    assert len(timeline) == 1
    row = timeline[0].split()[1]
    assert len(row) == 60 and sum(int(c) for c in row if c.isdigit()) == 3
    assert row.rstrip(".").endswith("x")  # cut off, not ended
    faults = next(line for line in text.splitlines() if line.strip().startswith("faults"))
    assert "^" in faults
    assert "60.0 ms: reset_peer added" in text


def test_table_marks_unexpected_verdicts() -> None:
    table = render_table(summary())
    assert "concurrency  7     PASS" in table and "as expected" in table
    assert "UNEXPECTED (want pass)" in table
    assert (
        table.splitlines()[-1]
        == "4 runs on reference (seed 7): 1 pass, 1 fail, 1 skip, 1 error in 3.5 s"
    )


def _figures(page: str) -> dict[str, dict[str, Any]]:
    """Every figure embedded in the page, by its element id."""
    found = re.findall(
        r'<script type="application/json" id="([^"]+)-data">(.*?)</script>', page, re.S
    )
    return {name: json.loads(text) for name, text in found}


def test_html_opens_with_a_verdict_banner_and_lists_failures_first() -> None:
    page = render_html(summary())
    banner = page[page.index('<div class="banner') : page.index("</div>", page.index("banner"))]
    assert 'class="banner fail"' in banner
    assert "FAIL" in banner and "1 failed · 1 errors · 1 passed · 1 skipped" in banner
    table = page[page.index("<tbody>") : page.index("</tbody>")]
    order = re.findall(r'<a href="#run-(\d+)">(\w+)</a>', table)
    # failures, then errors, then passes, then skips; each row links to its section
    assert [name for _, name in order] == ["nginx_idle", "broken", "concurrency", "sse_resume"]
    for anchor, _ in order:
        assert f'<section id="run-{anchor}"' in page
    assert "as expected" in page and "UNEXPECTED (want pass)" in page


def test_html_banner_counts_expectations_when_judged_by_them() -> None:
    judged = dataclasses.replace(summary(), expectations=True)
    page = render_html(judged)
    assert "1 of 2 as expected" in page  # the pass as expected, the fail not
    passing = RunSummary("naive", 7, (summary().results[0],), 1.0, "streamharness run")
    assert 'class="banner pass"' in render_html(passing)


def test_html_escapes_everything_and_has_copy_buttons_and_no_json_dump() -> None:
    page = render_html(summary())
    assert "&lt;proxy&gt;" in page and "<proxy>" not in page
    assert page.count('class="copy"') == 1 + 2  # the run's command, two replays
    assert 'data-target="replay-' in page
    assert '"arrivals"' not in page  # the data stays in report.json, linked
    assert '<a href="report.json">' in page
    assert '<script src="plotly.min.js">' in page


def test_html_timeline_has_lanes_a_legend_and_hover_per_token() -> None:
    figures = _figures(render_html(summary()))
    timelines = [f for name, f in figures.items() if name.startswith("fig-timeline")]
    assert len(timelines) == 2  # the two runs with streams
    failed = timelines[0]  # nginx_idle, listed first
    names = [t["name"] for t in failed["data"]]
    assert "token (stream failed or cut off)" in names and "fault (harness action)" in names
    tokens = next(t for t in failed["data"] if t["name"].startswith("token"))
    assert tokens["y"] == ["group 0 · client 0 · msg 0"] * 3
    assert tokens["hovertext"][1].endswith(
        "token #1 at 60.0 ms (60.0 ms after the request)<br>&#x27;t1&#x27;"
    )
    fault = next(t for t in failed["data"] if t["name"].startswith("fault"))
    assert fault["hovertext"] == ["60 ms: reset_peer added on downstream &lt;proxy&gt;"]
    assert failed["layout"]["xaxis"]["title"]["text"].endswith("(ms)")


def test_html_distributions_mark_percentiles_and_the_checks_limits() -> None:
    bounded = dataclasses.replace(
        summary().results[0], bounds=(Bound("ttft", "ttft p95 <=", 60.0),)
    )
    page = render_html(RunSummary("reference", 7, (bounded,), 1.0, "streamharness run"))
    figures = _figures(page)
    dist = figures["fig-dist-1"]
    labels = [a["text"] for a in dist["layout"]["annotations"]]
    assert "p50 = p90 = p99 50.0 ms" in labels  # both streams: TTFT 50 ms
    assert "ttft p95 <= 60.0 ms" in labels
    titles = [dist["layout"][k]["title"]["text"] for k in ("xaxis", "xaxis2")]
    assert titles == ["TTFT (ms, linear)", "ITL (ms, linear)"]
    overview = figures["fig-by-scenario"]
    assert [t["name"] for t in overview["data"][:4]] == ["min to max", "p50", "p90", "p99"]


def test_failure_summary_prints_seed_and_replay() -> None:
    blocks = summarise_failures(summary().results)
    assert len(blocks) == 2
    assert blocks[0].splitlines()[0] == "FAILED nginx_idle on reference (seed 7)"
    assert "replay: streamharness replay 7 nginx_idle" in blocks[0]
    # Each failed check is listed once, not again inside a joined summary line.
    reasons = [line for line in blocks[0].splitlines() if line.startswith("  - ")]
    assert len(reasons) == len(set(reasons))


def test_write_reports(tmp_path: Path) -> None:
    written = write_reports(summary(), tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names[:4] == ["broken-7.txt", "concurrency-7.txt", "junit.xml", "nginx_idle-7.txt"]
    assert {"report.json", "report.html", "report.txt", "sse_resume-7.txt"} <= set(names)
    json.loads((tmp_path / "out" / "report.json").read_text())
    # one copy of Plotly beside the page, the one the plotly package ships
    js = tmp_path / "out" / "plotly.min.js"
    assert js in written and js.stat().st_size > 1_000_000


def test_report_json_reads_back_into_the_same_summary() -> None:
    original = summary()
    again = summary_from_dict(json.loads(render_json(original)))
    assert render_json(again) == render_json(original)
    assert again.results[1].streams[0].ended_t == original.results[1].streams[0].ended_t
