"""The several-worker scenarios of the catalogue on both stores, with real nginx and Redis.

Two reference servers behind nginx round-robin: on the Redis store every such scenario passes;
the same run with each worker keeping streams in its own memory fails, and it fails by the
checks the scenario names (``memory_store_fails``): the harness catches the bug the shared
store fixes, for the right reason.
"""

from __future__ import annotations

import pytest

from scenarios.model import Scenario, load_catalogue
from scenarios.report import ScenarioResult, render_scenario_text
from scenarios.runner import RunOptions, replay_command, run_scenario
from scenarios.stack import NginxUnavailable, RedisUnavailable
from scenarios.stack.nginx import find_nginx
from scenarios.stack.redis import find_redis

pytestmark = [pytest.mark.integration, pytest.mark.nginx, pytest.mark.slow]

WORKERS = {s.name: s for s in load_catalogue() if s.stack.several_workers}
ON_MEMORY = sorted(name for name, s in WORKERS.items() if s.memory_store_fails)
SEED = 22


def _needs_nginx_and_redis() -> None:
    try:
        find_nginx()
        find_redis()
    except NginxUnavailable as exc:
        pytest.skip(f"nginx not available: {exc.reason}")
    except RedisUnavailable as exc:
        pytest.skip(f"redis-server not available: {exc}")


def _failed(scenario: Scenario, result: ScenarioResult) -> list[str]:
    assert len(result.checks) == len(scenario.checks)
    return [c.check for c, r in zip(scenario.checks, result.checks, strict=True) if not r.passed]


def test_the_catalogue_has_the_issues_worker_scenarios() -> None:
    assert set(WORKERS) >= {
        "workers_resume_other_worker",
        "workers_resend_other_worker",
        "workers_cancel_other_worker",
        "workers_end_after_last_token",
        "workers_redis_restart",
        "workers_owner_killed",
    }


@pytest.mark.parametrize("name", sorted(WORKERS))
async def test_passes_with_workers_sharing_redis(name: str) -> None:
    _needs_nginx_and_redis()
    result = await run_scenario(WORKERS[name], SEED, RunOptions())
    assert result.verdict == "pass", render_scenario_text(result)
    assert result.expected == "pass" and result.as_expected


@pytest.mark.parametrize("name", ON_MEMORY)
async def test_fails_for_the_right_reason_on_the_memory_store(name: str) -> None:
    _needs_nginx_and_redis()
    scenario = WORKERS[name]
    options = RunOptions(store="memory")
    result = await run_scenario(scenario, SEED, options)
    assert result.verdict == "fail", render_scenario_text(result)
    assert _failed(scenario, result) == scenario.memory_store_fails, render_scenario_text(result)
    # --expectations counts this as the expected verdict, and the replay keeps the store
    assert result.expected == "fail" and result.as_expected
    assert result.replay == replay_command(SEED, name, options)
    assert result.replay.endswith("--store memory")


async def test_without_redis_the_scenario_is_skipped_with_the_reason() -> None:
    _needs_nginx_and_redis()
    scenario = WORKERS[sorted(WORKERS)[0]]
    result = await run_scenario(
        scenario, SEED, RunOptions(redis_binary="/nonexistent/redis-server")
    )
    assert result.verdict == "skip", render_scenario_text(result)
    assert result.reason.startswith("redis unavailable: redis-server is not installed")
    assert "apt-get install redis-server" in result.reason


@pytest.mark.parametrize("name", sorted(set(WORKERS) - set(ON_MEMORY)))
async def test_a_redis_fault_without_redis_is_skipped_with_the_reason(name: str) -> None:
    result = await run_scenario(WORKERS[name], SEED, RunOptions(store="memory"))
    assert result.verdict == "skip"
    assert result.reason == "tests the Redis store's own faults; --store memory does not apply"
