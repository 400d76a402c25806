"""The guard of tests/conftest.py: a process a test leaves running fails the run, with or
without xdist workers (a nested pytest on a test that leaks ``sleep``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

LEAKY = """
import subprocess

KEEP = []


def test_leaks():
    KEEP.append(subprocess.Popen(["sleep", "{seconds}"]))
"""


# Each case leaks its own duration: the two may run at once on two workers, and each looks
# for its own leftover only.
@pytest.mark.parametrize(
    ("workers", "seconds"), [([], "61.5"), (["-n", "2"], "61.7")], ids=["one-process", "xdist"]
)
def test_a_process_left_running_fails_the_run(
    tmp_path: Path, workers: list[str], seconds: str
) -> None:
    (tmp_path / "test_leaky.py").write_text(LEAKY.format(seconds=seconds))
    # Not the outer session's mark: the nested run is then its own guard.
    env = {k: v for k, v in os.environ.items() if k != "STREAMHARNESS_TEST_SESSION"}
    env["STREAMHARNESS_LEFTOVER_GRACE_S"] = "0.5"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-W", "ignore", "--rootdir", str(tmp_path), *workers, str(tmp_path / "test_leaky.py")],
        cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "processes left running by the tests (now killed):" in result.stdout
    assert f"sleep {seconds}" in result.stdout
    assert "1 passed" in result.stdout  # the test itself passed: the guard failed the run
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", seconds]
    ]
