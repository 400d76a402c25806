"""The pytest plugin examples in docs/mockllm.md run, as written, in a fresh pytest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_examples import pytest_example, run_pytest_example

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mockllm.md"


def test_plugin_example_passes(tmp_path: Path) -> None:
    result = run_pytest_example(pytest_example(DOCS.read_text()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_agent_loop_example_passes(tmp_path: Path) -> None:
    name = "test_agent_loop.py"
    result = run_pytest_example(pytest_example(DOCS.read_text(), name), tmp_path, name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
