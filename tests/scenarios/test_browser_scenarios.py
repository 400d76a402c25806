"""The browser scenarios against real stacks and real Chromium pages.

Each is seen failing where it should: on the naive server with the tutorial's hook, by the
checks that show its flaw (with a reason naming it), and passing on the reference server with
the protocol v1 client. Skipped, with the reason, only where Chromium or Node is missing
(scripts/bootstrap.sh installs both).
"""

from __future__ import annotations

import pytest

from scenarios.browser.session import browser_unavailable
from scenarios.model import load_catalogue
from scenarios.report import ScenarioResult, render_scenario_text
from scenarios.runner import RunOptions, run_scenario

# One worker runs them all (``--dist loadgroup``): two at once (20 Chromium pages each for
# browser_many_tabs) starve every other test of a 2-core machine.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.xdist_group("chromium"),
]

CATALOGUE = {s.name: s for s in load_catalogue()}
SEED = 20260
# What the tutorial's hook gets wrong in each, on the naive server: (failing check, a text
# its reason holds).
NAIVE_FAILS = {
    "browser_end_burst": ("saved message equals the mock's answer", "missing"),
    "browser_reconnect": ("saved message equals the mock's answer", "the page saved no answer"),
    "browser_server_restart": (
        "saved message equals the mock's answer",
        "the page saved no answer",
    ),
    "browser_many_tabs": ("text equals the mock's answer", "differs at char"),
}


async def _run(name: str, target: str) -> ScenarioResult:
    reason = browser_unavailable()
    if reason is not None:
        pytest.skip(reason)
    return await run_scenario(CATALOGUE[name], SEED, RunOptions(target=target))


def test_every_browser_scenario_is_tested_here() -> None:
    assert sorted(NAIVE_FAILS) == sorted(n for n, s in CATALOGUE.items() if "browser" in s.tags)


@pytest.mark.parametrize("name", sorted(NAIVE_FAILS))
async def test_the_v1_client_passes_on_the_reference_server(name: str) -> None:
    result = await _run(name, "reference")
    assert result.verdict == "pass", render_scenario_text(result)
    assert result.as_expected
    assert all(s.page == "v1" and s.saved_text == s.expected_text for s in result.streams)
    assert set(result.screenshots) == {CATALOGUE[name].clients[0].name}
    assert result.screenshots[CATALOGUE[name].clients[0].name].startswith(b"\x89PNG")


@pytest.mark.parametrize("name", sorted(NAIVE_FAILS))
async def test_the_tutorial_hook_fails_on_the_naive_server_for_its_flaw(name: str) -> None:
    result = await _run(name, "naive")
    assert result.verdict == "fail", render_scenario_text(result)
    assert result.as_expected
    check, words = NAIVE_FAILS[name]
    failed = {c.check: c.reason for c in result.checks if not c.passed}
    assert check in failed, render_scenario_text(result)
    assert words in failed[check], failed[check]
    assert all(s.page == "tutorial" for s in result.streams)
