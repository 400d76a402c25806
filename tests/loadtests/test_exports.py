"""The public API is what ``__all__`` says, and importing it never pulls in Locust or gevent."""

from __future__ import annotations

import subprocess
import sys

import loadtests


def test_all_names_exist() -> None:
    for name in loadtests.__all__:
        assert hasattr(loadtests, name), name


def test_pure_modules_do_not_import_locust_or_gevent() -> None:
    code = (
        "import sys, loadtests, loadtests.cli, loadtests.report, loadtests.wsframes, "
        "loadtests.bench.framesource\n"
        "bad = [m for m in ('locust', 'gevent') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
