"""The harness judging servers it did not write: every verdict, and what its reason says.

Each server here is a real process (FastAPI apps written the way people publish them, Node
servers on the Vercel AI SDK and on Express, the LiteLLM proxy), started pointed at the port
where the harness puts its provider, and run as a ``--target URL`` with the built-in or
file profile that describes it. For each, the scenarios that catch its flaws must FAIL with a
reason that says what the server did, and the ones it handles must PASS: a harness whose checks
fail everything is as useless as one that passes everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from scenarios.model import load_catalogue
from scenarios.report import ScenarioResult, render_scenario_text
from scenarios.runner import RunOptions, run_scenario
from scenarios.stack.procs import free_port
from tests.targets import node
from tests.targets.catalogue import SERVERS, serve_target

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

CATALOGUE = {s.name: s for s in load_catalogue()}
SEED = 5


@dataclass(frozen=True)
class Case:
    server: str
    scenario: str
    verdict: str
    # Fragments the reason must contain: what the server did, in the harness's words.
    says: tuple[str, ...] = ()


LEFT_RUNNING = "was still running when the run ended"
# The blocking SDK in a worker thread: the run waits for the response, which ends with the answer.
READ_TO_THE_END = "after the cancel (completed, 200 tokens sent)"
LOST_LAYOUT = "got 'Two steps:1. Read the file.2. "
GONE = "cannot connect"

CASES = [
    # Plain-text WebSocket, no end frame, newlines stripped, the provider read to its end.
    Case("ws_text", "whitespace_preserved", "fail", (LOST_LAYOUT,)),
    Case("ws_text", "client_leaves_stops_provider", "fail", (LEFT_RUNNING,)),
    Case("ws_text", "stalled_upstream", "fail", ("completed after 3 tokens, ended by a silence",)),
    Case("ws_text", "end_marker_in_answer", "pass"),
    Case("ws_text", "upstream_abort", "pass"),
    # Raw-text SSE: [DONE] in the answer ends it, newlines break the framing.
    Case("sse_get", "end_marker_in_answer", "fail", ("done/c0/m0: differs at char 0: got ''",)),
    Case("sse_get", "whitespace_preserved", "fail", (LOST_LAYOUT,)),
    Case("sse_get", "client_leaves_stops_provider", "pass"),
    Case("sse_get", "slow_stream_isolation", "pass"),
    # The same with a synchronous SDK call: one slow answer blocks every other user.
    Case("sse_sync", "slow_stream_isolation", "fail", ("TTFT each <= 600 ms [quick]: 3 of 3 out",)),
    Case("sse_sync", "client_leaves_stops_provider", "fail", (READ_TO_THE_END,)),
    Case("sse_sync", "upstream_429_then_success", "pass"),  # the openai SDK retries
    # The AI SDK data stream from Python: whole text, but a stall is never reported.
    Case(
        "ai_data_stream",
        "stalled_upstream",
        "fail",
        ("3 tokens, then nothing for", "no end, no error"),
    ),
    Case("ai_data_stream", "whitespace_preserved", "pass"),
    Case("ai_data_stream", "end_marker_in_answer", "pass"),
    Case("ai_data_stream", "client_leaves_stops_provider", "pass"),
    # The Vercel AI SDK (Node): exits on a provider drop, never aborts the provider call.
    Case("ai_sdk_ui", "provider_drop_survival", "fail", ("next/c0/m0 error after 0 tokens", GONE)),
    Case("ai_sdk_ui", "client_leaves_stops_provider", "fail", (LEFT_RUNNING,)),
    Case(
        "ai_sdk_ui",
        "upstream_abort",
        "fail",
        ("ended by the connection closing, no end message",),
    ),
    Case("ai_sdk_ui", "whitespace_preserved", "pass"),
    Case("ai_sdk_ui", "end_marker_in_answer", "pass"),
    # Express + openai (Node): the same two flaws, its own way.
    Case("express_openai", "provider_drop_survival", "fail", (GONE,)),
    Case("express_openai", "client_leaves_stops_provider", "fail", (LEFT_RUNNING,)),
    Case("express_openai", "whitespace_preserved", "pass"),
    Case("express_openai", "end_marker_in_answer", "pass"),
    # A careful server of a shape no built-in profile knows, read with the README's profile.
    Case("json_ws", "mid_stream_cancel", "pass"),
    Case("json_ws", "client_leaves_stops_provider", "pass"),
    Case("json_ws", "upstream_abort", "pass"),
    Case("json_ws", "whitespace_preserved", "pass"),
    Case("json_ws", "reconnect_resend", "fail", ("a second generation for one message",)),
    # A provider stream cut after 5 tokens with no finish_reason and no [DONE]: shown as whole.
    Case("json_ws", "upstream_truncated", "fail", ("completed after 5 tokens, as if whole",)),
    Case("ai_data_stream", "finish_reason_and_usage", "fail", ("expected 'length'",)),
]


def _check(result: ScenarioResult, case: Case) -> None:
    report = render_scenario_text(result)
    assert result.verdict == case.verdict, report
    for fragment in case.says:
        assert fragment in result.reason, report


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.server}-{c.scenario}")
async def test_verdict(case: Case, tmp_path: Path) -> None:
    server = SERVERS[case.server]
    if server.launcher == "node" and (why := node.node_available()) is not None:
        pytest.skip(why)
    # A fresh server per case: some of them exit on purpose when the provider drops.
    async with serve_target(case.server, free_port(), tmp_path) as options:
        result = await run_scenario(CATALOGUE[case.scenario], SEED, options)
    _check(result, case)


# --------------------------------------------------------------------------------- LiteLLM

# A gateway done with care: it passes a client's disconnect on, retries a 429 as told, turns a
# provider drop into an error chunk; but with no read timeout a stalled provider means silence.
LITELLM_CASES = [
    Case("litellm", "client_leaves_stops_provider", "pass"),
    Case("litellm", "upstream_429_then_success", "pass"),
    Case("litellm", "upstream_abort", "pass"),
    Case("litellm", "whitespace_preserved", "pass"),
    Case("litellm", "end_marker_in_answer", "pass"),
    Case("litellm", "provider_drop_survival", "pass"),
    Case("litellm", "stalled_upstream", "fail", ("3 tokens, then nothing for", "no end, no error")),
    Case("litellm", "upstream_truncated", "fail", ("as if whole",)),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def litellm_target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunOptions]:
    async with serve_target("litellm", free_port(), tmp_path_factory.mktemp("litellm")) as options:
        yield options


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.xdist_group("litellm_verdicts")  # one worker, so one proxy start (about 8 s)
@pytest.mark.parametrize("case", LITELLM_CASES, ids=lambda c: c.scenario)
async def test_litellm_verdict(case: Case, litellm_target: RunOptions) -> None:
    result = await run_scenario(CATALOGUE[case.scenario], SEED, litellm_target)
    _check(result, case)
