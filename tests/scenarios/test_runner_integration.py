"""The catalogue against real stacks (mockllm, servers, fault proxy, nginx as subprocesses).

The harness is only trusted once seen failing: every scenario must pass on the reference
server, and every scenario aimed at a flaw of the naive server must fail on it.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scenarios.model import Scenario, load_catalogue, parse_scenario
from scenarios.report import ScenarioResult, render_scenario_text
from scenarios.runner import RunOptions, run_scenario
from scenarios.stack.nginx import NginxUnavailable, find_nginx
from scenarios.stack.procs import free_port, start_process
from scenarios.stack.redis import RedisUnavailable, find_redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CATALOGUE = {s.name: s for s in load_catalogue()}
# Browser scenarios run in tests/scenarios/test_browser_scenarios.py: their verdicts against
# naive are compared by the checks that fail, not by reasons (which pages lose how many
# tokens is the page's timing).
PROTOCOL = sorted(n for n, s in CATALOGUE.items() if "browser" not in s.tags)
SEED = 20260


def _params(names: list[str]) -> list[object]:
    return [
        pytest.param(n, marks=[pytest.mark.nginx] if CATALOGUE[n].needs_nginx else [])
        for n in names
    ]


def _skip_without_nginx(scenario: Scenario) -> None:
    if scenario.needs_nginx:
        try:
            find_nginx()
        except NginxUnavailable as exc:
            pytest.skip(exc.reason)
    if scenario.stack.store == "redis":
        try:
            find_redis()
        except RedisUnavailable as exc:
            pytest.skip(str(exc))


async def _run(name: str, target: str, seed: int = SEED) -> ScenarioResult:
    scenario = CATALOGUE[name]
    _skip_without_nginx(scenario)
    return await run_scenario(scenario, seed, RunOptions(target=target))


@pytest.mark.parametrize("name", _params(PROTOCOL))
async def test_every_scenario_passes_on_the_reference_server(name: str) -> None:
    result = await _run(name, "reference")
    assert result.verdict == "pass", render_scenario_text(result)
    assert result.expected == "pass" and result.as_expected


@pytest.fixture
async def naive_by_url(tmp_path: Path) -> AsyncIterator[RunOptions]:
    """The naive server started as an ordinary process, run as a URL target."""
    port = free_port()
    argv = [sys.executable, "-m", "reference_server.naive", "--port", "0"]
    argv += ["--upstream", f"http://127.0.0.1:{port}/v1"]
    server = await start_process("naive-by-url", argv, log_dir=tmp_path)
    assert server.url is not None
    try:
        yield RunOptions(
            target="ws" + server.url.removeprefix("http"), profile="tutorial", mock_port=port
        )
    finally:
        await server.stop(5.0)


def _masked(reason: str) -> str:
    """A reason without what the clock and the ports decide: times, ids, port numbers, and
    the excerpts of text (which tokens arrive before a fault strikes is the machine's timing)."""
    reason = re.sub(r"chatcmpl-\w+", "ID", reason)
    reason = re.sub(r"got .{0,90}?, want .{0,90}? \(lengths", "got ..., want ... (lengths", reason)
    reason = re.sub(r"'(?:[^'\\]|\\.)*'", "'...'", reason)
    return re.sub(r"\d+(\.\d+)?", "N", reason)


@pytest.mark.parametrize("name", _params(PROTOCOL))
async def test_naive_gets_the_verdicts_it_expects_and_the_same_as_a_url_target(
    name: str, naive_by_url: RunOptions
) -> None:
    # Side by side: each run mostly waits on its paced streams and deadlines.
    builtin, by_url = await asyncio.gather(
        _run(name, "naive"), run_scenario(CATALOGUE[name], SEED, naive_by_url)
    )
    assert builtin.verdict in ("pass", "fail", "skip"), render_scenario_text(builtin)
    assert builtin.as_expected is not False, render_scenario_text(builtin)
    if builtin.verdict == "fail":
        failed = [c for c in builtin.checks if not c.passed]
        assert failed and all(c.reason for c in failed)
        assert builtin.replay == f"streamharness replay {SEED} {name} --target naive"
    # `--target naive` is "start the naive server, use profile tutorial", nothing more.
    assert by_url.verdict == builtin.verdict, render_scenario_text(by_url)
    assert [c.check for c in by_url.checks if not c.passed] == [
        c.check for c in builtin.checks if not c.passed
    ]
    assert _masked(by_url.reason) == _masked(builtin.reason)


async def test_scenarios_needing_what_a_profile_lacks_are_skipped_with_a_reason() -> None:
    result = await _run("mid_stream_cancel", "naive")
    assert result.verdict == "skip"
    assert result.reason == "needs a cancel message; profile tutorial declares none"


async def test_same_seed_same_verdicts_and_fault_schedule() -> None:
    # A scenario with a token-triggered toxic: its fault schedule depends on the run.
    runs = [await _run("reconnect_resend", "naive", seed=77) for _ in range(2)]
    a, b = runs
    assert (a.verdict, b.verdict) == ("fail", "fail")
    assert [(c.check, c.passed) for c in a.checks] == [(c.check, c.passed) for c in b.checks]
    assert [e.what for e in a.events] == [e.what for e in b.events]
    assert a.schedule == b.schedule and any("reset_peer" in line for line in a.schedule)
    # Not compared: how many tokens slipped through before the reset hit; that depends on
    # the machine's timing, which the seed does not control.


async def test_missing_nginx_skips_with_a_visible_reason() -> None:
    result = await run_scenario(
        CATALOGUE["nginx_idle_timeout"],
        1,
        RunOptions(nginx_binary="/nonexistent/nginx"),
    )
    assert result.verdict == "skip"
    assert "nginx unavailable" in result.reason and "/nonexistent/nginx" in result.reason


@pytest.fixture
async def external_server(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A reference server the harness does not start, calling the mock on a fixed port."""
    mock_port = free_port()
    argv = [sys.executable, "-m", "reference_server", "--port", "0"]
    argv += ["--upstream", f"http://127.0.0.1:{mock_port}/v1"]
    server = await start_process("external", argv, log_dir=tmp_path)
    assert server.url is not None
    yield "ws" + server.url.removeprefix("http"), mock_port
    await server.stop(5.0)


async def test_an_external_target_given_by_url(external_server: tuple[str, int]) -> None:
    target, mock_port = external_server
    options = RunOptions(target=target, mock_port=mock_port)
    result = await run_scenario(CATALOGUE["concurrency"], 4, options)
    assert result.verdict == "pass", render_scenario_text(result)
    assert result.expected is None
    assert result.replay.endswith(f"--target {target} --mock-port {mock_port}")
    restart = await run_scenario(CATALOGUE["graceful_restart"], 4, options)
    assert restart.verdict == "skip" and "URL target" in restart.reason


@pytest.mark.parametrize("trigger", ["", ", after_tokens: 2"])
async def test_a_fault_the_proxy_refuses_is_an_error_with_its_message(trigger: str) -> None:
    scenario = parse_scenario(
        f"""\
name: refused
description: slicer variation must be smaller than the average size (Toxiproxy refuses it)
expect: {{reference: pass}}
stack: {{downstream_proxy: true}}
mock: {{tokens: 10, itl_ms: 5}}
toxics:
  - {{proxy: downstream, type: slicer, attributes: {{average_size: 5, size_variation: 9}}{trigger}}}
clients: [{{count: 1, timeout_s: 3}}]
checks: [{{check: every_stream_ended}}]
"""
    )
    result = await run_scenario(scenario, 1, RunOptions())
    assert result.verdict == "error", render_scenario_text(result)
    assert "the fault proxy refused slicer toxic" in result.reason
    assert "HTTP 400" in result.reason
    assert result.logs.get("directory")


def _stack_dirs(where: Path) -> list[str]:
    return [str(p) for p in where.glob("streamharness-stack-*")]


def _size(path: str) -> int:
    return Path(path).stat().st_size


@pytest.mark.parametrize(
    ("target", "kept"), [("reference", False), ("naive", True)], ids=["pass", "fail"]
)
async def test_temporary_logs_are_kept_only_for_a_run_that_did_not_pass(
    target: str, kept: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where the stack makes its temporary log directory when no --logs is given.
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    result = await run_scenario(CATALOGUE["end_marker_in_answer"], SEED, RunOptions(target=target))
    assert result.verdict == ("fail" if kept else "pass"), render_scenario_text(result)
    made = _stack_dirs(tmp_path)
    if kept:
        assert made == [result.logs["directory"]]
        assert _size(result.logs["mockllm"]) > 0
    else:
        assert made == [] and result.logs == {}


async def test_logs_asked_for_are_kept_for_a_run_that_passed(tmp_path: Path) -> None:
    options = RunOptions(log_dir=tmp_path / "logs")
    result = await run_scenario(CATALOGUE["end_marker_in_answer"], SEED, options)
    assert result.verdict == "pass", render_scenario_text(result)
    assert result.logs["directory"] == str(tmp_path / "logs" / f"end_marker_in_answer-{SEED}")
    assert _size(result.logs["mockllm"]) > 0
