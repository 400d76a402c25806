"""Run a pytest example taken from a Markdown page in a fresh pytest, as a user would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def pytest_example(markdown: str, name: str = "test_my_app.py") -> str:
    """The one ```python block that starts with ``# <name>``."""
    blocks = re.findall(rf"```python\n(# {re.escape(name)}.*?)```", markdown, re.S)
    assert len(blocks) == 1, f"expected one {name} example, found {len(blocks)}"
    return str(blocks[0])


def run_pytest_example(
    source: str,
    folder: Path,
    name: str = "test_my_app.py",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    (folder / name).write_text(source)
    # A strict user configuration: any warning (an unregistered marker...) fails the run.
    (folder / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "."],
        cwd=folder,
        env={**os.environ, **env} if env is not None else None,
        capture_output=True,
        text=True,
        timeout=50,
    )
