"""How big an HTML report is and how long Chromium takes to show it.

    python -m tests.report_timing streamharness-reports/<stamp>/report.html [...] [--runs 3]

For each page: its size and that of the ``plotly.min.js`` beside it; when the banner showed
(Chromium's first contentful paint: the verdict is readable); the time from navigation to the
load event with the first screen drawn ("first screen", plotly.min.js parsed; the figures
below it are drawn as they scroll into view); and the time to draw every figure of the page
after that ("all figures", what printing or a full-page screenshot costs). Medians of
``--runs`` fresh pages in Debian's Chromium (``/usr/bin/chromium``), 1280 x 900.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.report_timing")
    parser.add_argument("pages", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            for page_path in args.pages:
                paint, first, every = [], [], []
                figures = 0
                for _ in range(args.runs):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    started = time.perf_counter()
                    page.goto(page_path.resolve().as_uri(), wait_until="load")
                    # two animation frames: the first screen's figures are on screen
                    page.evaluate("new Promise(r => requestAnimationFrame(() => "
                                  "requestAnimationFrame(r)))")  # fmt: skip
                    first.append(time.perf_counter() - started)
                    paint.append(
                        page.evaluate(
                            "performance.getEntriesByName('first-contentful-paint')[0].startTime"
                        )
                        / 1000
                    )
                    started = time.perf_counter()
                    page.evaluate("window.renderAllPlots()")
                    every.append(time.perf_counter() - started)
                    figures = page.locator(".plot[data-ready]").count()
                    page.close()
                html = page_path.stat().st_size
                js_path = page_path.parent / "plotly.min.js"
                js = js_path.stat().st_size if js_path.exists() else 0
                print(
                    f"{page_path}: {html / 1e6:.2f} MB + plotly.min.js {js / 1e6:.2f} MB, "
                    f"{figures} figures; banner {statistics.median(paint):.2f} s, "
                    f"first screen {statistics.median(first):.2f} s, "
                    f"all figures +{statistics.median(every):.2f} s "
                    f"(median of {args.runs})"
                )
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
