"""The pytest plugin example in docs/mockllm.md runs, as written, in a fresh pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs" / "mockllm.md"


def test_plugin_example_passes(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(# test_my_app\.py.*?)```", DOCS.read_text(), re.S)
    assert len(blocks) == 1
    (tmp_path / "test_my_app.py").write_text(blocks[0])
    # A strict user configuration: any warning (an unregistered marker...) fails the run.
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
