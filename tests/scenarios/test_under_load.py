"""Toxic scenarios under CPU load: a busy machine must not turn into a false verdict.

Two busy loops (one per core of the CI machines) run beside the stack while every scenario
tagged ``toxics`` runs against the reference server; each must still pass. A fault due "at
start" is in place before the clients start, so no answer can slip out before it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from scenarios.model import Scenario, load_catalogue
from scenarios.report import render_scenario_text
from scenarios.runner import RunOptions, run_scenario

# One worker runs them all (``--dist loadgroup``): spread over several, each would start
# its own two busy loops, and the machine would be far busier than these tests mean.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("busy_cores")]

TOXIC = [s for s in load_catalogue() if "toxics" in s.tags]


@pytest.fixture(scope="module")
def busy_cores() -> Iterator[None]:
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait(5)


@pytest.mark.parametrize("scenario", TOXIC, ids=lambda s: s.name)
async def test_toxic_scenarios_keep_their_verdict_on_a_busy_machine(
    scenario: Scenario, busy_cores: None
) -> None:
    result = await run_scenario(scenario, 7, RunOptions())
    assert result.verdict == "pass", render_scenario_text(result)
