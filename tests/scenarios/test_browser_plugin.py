"""The ``browser_page`` fixture: the docs' example runs, as written, in a fresh pytest, and
without Chromium it is skipped with the reason."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from scenarios.browser.chromium import chromium_unavailable
from tests.doc_examples import pytest_example, run_pytest_example

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"


def _plugin_args() -> list[str]:
    """``-p`` for the plugin when this environment was installed before its entry point
    existed (pip install -e . registers it); the example itself relies on the entry point."""
    names = {e.name for e in entry_points(group="pytest11")}
    return [] if "streamharness_browser" in names else ["-p", "scenarios.browser.pytest_plugin"]


def test_the_docs_example_passes(tmp_path: Path) -> None:
    reason = chromium_unavailable()
    if reason is not None:
        pytest.skip(reason)
    result = run_pytest_example(pytest_example(DOCS.read_text()), tmp_path, args=_plugin_args())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_without_chromium_the_fixture_skips_with_the_reason(tmp_path: Path) -> None:
    result = run_pytest_example(
        pytest_example(DOCS.read_text()),
        tmp_path,
        args=[*_plugin_args(), "-rs"],
        env={"STREAMHARNESS_CHROMIUM": str(tmp_path / "no-chromium")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert f"Chromium not found at {tmp_path / 'no-chromium'}" in result.stdout
    assert "apt-get install chromium" in result.stdout
