"""Both HTML reports, from real runs, as a person sees them in Chromium.

A small ``streamharness run`` against the naive server (one scenario fails there, one passes,
one is skipped) and a short ``streamharness load``; each report is opened in Debian's Chromium
through Playwright and checked for what is visible: the banner, a failure's reason, every
plot's axis titles, the copy button. A screenshot of each page goes to the CI artefact folder
(``$STREAMHARNESS_ARTEFACTS``, default ``tests-artefacts/`` at the repository root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from scenarios.checks import Arrival, StreamObservation
from scenarios.report import RunSummary, ScenarioResult, write_reports

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("STREAMHARNESS_ARTEFACTS") or ROOT / "tests-artefacts")
SCENARIOS = ["concurrency", "end_marker_in_answer", "jitter", "mid_stream_cancel"]
PROMPT = "[[mock ttft_ms=60 itl_ms=10 tokens=10]] hello"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: scripts/bootstrap.sh installs Debian's chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


def _cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamharness.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _open(browser: Browser, report: Path) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(report.as_uri(), wait_until="load")
    page.evaluate("window.renderAllPlots()")
    total = page.locator(".plot").count()
    expect(page.locator(".plot[data-ready]")).to_have_count(total, timeout=30_000)
    assert problems == []
    return page


def _axis_titles(page: Page) -> list[list[str]]:
    """For each plot, the texts of its axis titles as drawn (SVG text in the page)."""
    titles: list[list[str]] = page.eval_on_selector_all(
        ".plot",
        """plots => plots.map(p => Array.from(p.querySelectorAll("text"))
            .filter(t => /^[xy][0-9]*title$/.test(t.getAttribute("class") || ""))
            .map(t => t.textContent))""",
    )
    return titles


def _screenshots(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTEFACTS / f"{name}.png")  # the first screen
    page.screenshot(path=ARTEFACTS / f"{name}-full.png", full_page=True)


def test_the_scenario_report_in_chromium(browser: Browser, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    done = _cli("run", *SCENARIOS, "--target", "naive", "--seed", "7", "-q", "--report",
                str(folder))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    page = _open(browser, folder / "report.html")

    banner = page.locator("#verdict")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("FAIL")
    expect(banner).to_contain_text("1 failed · 0 errors · 2 passed · 1 skipped")
    # failures first, then passes, then the skip; each row links to its section
    rows = page.locator("#results ~ table tbody tr td:nth-child(2)")
    expect(rows).to_have_text(["end_marker_in_answer", "concurrency", "jitter",
                               "mid_stream_cancel"])  # fmt: skip
    page.get_by_role("link", name="end_marker_in_answer").click()
    failed = page.locator("section.run").first
    expect(failed.locator(".reason")).to_be_visible()
    expect(failed.locator(".reason")).to_contain_text("text equals the mock's answer")
    expect(page.locator("section.run .reason.skip")).to_contain_text("cancel")

    titles = _axis_titles(page)
    assert len(titles) == 2 + 3 + 3  # overviews; timelines and distributions of 3 runs
    for plot in titles:
        assert plot and all(t.strip() for t in plot), titles
    flat = [t for plot in titles for t in plot]
    assert "TTFT (ms, log scale)" in flat
    assert "time since the scenario's clients started (ms)" in flat
    assert any(t.startswith("ITL (ms,") for t in flat) and "streams" in flat, titles
    lanes = page.locator("#run-0 .ytick text").all_text_contents()
    assert "group 0 · client 0 · msg 0" in lanes
    expect(page.locator("#run-2 .legend")).to_contain_text("fault (harness action)")

    copy = failed.locator("button.copy")
    expect(copy).to_be_visible()
    copy.click()
    expect(copy).to_have_text("Copied")
    replay = failed.locator(".cmd code").text_content()
    assert replay and replay.startswith("streamharness replay 7 end_marker_in_answer")
    assert page.evaluate("navigator.clipboard.readText()") == replay
    _screenshots(page, "scenario-report")


def test_the_load_report_in_chromium(browser: Browser, tmp_path: Path) -> None:
    folder = tmp_path / "load"
    gates = ["--ttft-p95-ms", "1", "--itl-p99-ms", "500"]  # the first one fails
    done = _cli("load", "--users", "3", "--duration", "3s", "--think-time", "0", "--prompt",
                PROMPT, *gates, "--report", str(folder))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr  # the 1 ms gate fails
    assert (folder / "locust.html").is_file()
    page = _open(browser, folder / "report.html")

    banner = page.locator("#verdict")
    expect(banner).to_contain_text("FAIL")
    expect(banner).to_contain_text("1 of 2 gates failed: ttft-p95-ms")
    expect(page.locator("#gates ~ table").first).to_contain_text("ttft-p95-ms")

    titles = _axis_titles(page)
    assert len(titles) == 3  # TTFT and ITL, TPOT and E2E, everything over time
    flat = [t for plot in titles for t in plot]
    for axis in ("streams", "gaps", "time (UTC)", "tokens/s", "TTFT (ms)"):
        assert axis in flat, flat
    assert any(t.startswith("TTFT (ms,") for t in flat) and any(t.startswith("E2E") for t in flat)
    notes = page.locator("#fig-dist-1 .annotation-text").all_text_contents()
    assert "gate p95 <= 1 ms" in notes and any(n.startswith("p99 ") for n in notes)
    expect(page.locator("#fig-over-time .legend")).to_contain_text("users (Locust)")

    copy = page.locator("button.copy").first
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()").startswith("streamharness load ")
    _screenshots(page, "load-report")


def test_a_page_without_plotly_beside_it_says_what_to_do(browser: Browser, tmp_path: Path) -> None:
    stream = StreamObservation(
        key="g0/c0/m0", group="g0", client=0, message=0, prompt="p", transport="ws",
        arrivals=(Arrival(0, "a", 0.01), Arrival(1, "b", 0.02)), ended_t=0.03,
    )  # fmt: skip
    result = ScenarioResult("x", "reference", 1, "pass", streams=(stream,))
    write_reports(RunSummary("reference", 1, (result,), 1.0), tmp_path)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(tmp_path / "report.html", moved / "report.html")  # the page alone
    context = browser.new_context()
    page = context.new_page()
    page.goto((moved / "report.html").as_uri(), wait_until="load")
    expect(page.locator(".plot .missing").first).to_contain_text("plotly.min.js")
    expect(page.locator(".plot .missing").first).to_contain_text("copy the whole folder")
    context.close()
