"""The suite's ``xdist_group`` marks keep each group on one worker under the README's test
command (``--dist loadgroup``).

They matter: the Chromium scenarios must not run two 20-page runs at once, the busy-loop tests
must not each start their own busy loops, and a LiteLLM module must start its proxy once.
pytest 9.2 with pytest-xdist 3.8 drops the marks without a word (pytest-dev/pytest-xdist#1386),
so this runs a small suite the way ``scripts/test.sh`` runs ours and looks at which worker ran
what.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUITE = """
import os
import pytest

def _note(name):
    with open(os.environ["GROUPS_LOG"], "a") as log:
        log.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.mark.xdist_group("one")
@pytest.mark.parametrize("i", range(4))
def test_grouped(i):
    _note(f"grouped{i}")

@pytest.mark.parametrize("i", range(4))
def test_free(i):
    _note(f"free{i}")
"""


def test_a_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    log = tmp_path / "workers.log"
    env = {**os.environ, "GROUPS_LOG": str(log)}
    argv = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q"]
    argv += ["-p", "no:cacheprovider", "test_suite.py"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    ran = dict(line.split() for line in log.read_text().splitlines())
    assert len(ran) == 8, ran
    grouped = {worker for name, worker in ran.items() if name.startswith("grouped")}
    assert len(grouped) == 1, f"the group ran on {sorted(grouped)}: {ran}"
