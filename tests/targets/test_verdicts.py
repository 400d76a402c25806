"""The harness judging servers it did not write: every verdict, and what its reason says.

Each server here is a real process (FastAPI apps written the way people publish them, Node
servers on the Vercel AI SDK and on Express, the LiteLLM proxy), started pointed at the port
where the harness puts its provider, and run as a ``--target URL`` with the built-in or
file profile that describes it. For each, the scenarios that catch its flaws must FAIL with a
reason that says what the server did, and the ones it handles must PASS: a harness whose checks
fail everything is as useless as one that passes everything.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from scenarios.model import load_catalogue
from scenarios.procs import free_port
from scenarios.report import ScenarioResult, render_scenario_text
from scenarios.runner import RunOptions, run_scenario
from tests.targets import litellm, node, pyservers

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

CATALOGUE = {s.name: s for s in load_catalogue()}
PROFILES = Path(__file__).with_name("profiles")
SEED = 5


@dataclass(frozen=True)
class Case:
    server: str
    scenario: str
    verdict: str
    # Fragments the reason must contain: what the server did, in the harness's words.
    says: tuple[str, ...] = ()


@dataclass(frozen=True)
class Server:
    launcher: str  # "py", "node" or "litellm"
    profile: str  # built-in name or file in ./profiles
    websocket: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


SERVERS = {
    "ws_text": Server("py", str(PROFILES / "ws_text_chat.yaml"), websocket=True),
    "sse_get": Server("py", "sse-text"),
    "sse_sync": Server("py", str(PROFILES / "sse_sync.yaml")),
    "ai_data_stream": Server("py", "ai-sdk-data"),
    "ai_sdk_ui": Server("node", "ai-sdk"),
    "express_openai": Server("node", "sse-json"),
    # The README's own-shape example: its profile file is written from the README itself.
    "json_ws": Server("py", "README:my_app.yaml", websocket=True),
}

LEFT_RUNNING = "after the cancel (completed, 80 tokens sent)"
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
    Case("sse_sync", "client_leaves_stops_provider", "fail", (LEFT_RUNNING,)),
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
]


def readme_profile(folder: Path) -> str:
    """The README's ``# my_app.yaml`` profile, written to ``folder`` as a user would save it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```yaml\n( *# my_app\.yaml.*?)```", readme, re.S)
    assert len(blocks) == 1, "expected one my_app.yaml example in the README"
    file = folder / "my_app.yaml"
    file.write_text(textwrap.dedent(blocks[0]))
    return str(file)


@contextlib.asynccontextmanager
async def _serve(name: str, provider_port: int, log_dir: Path) -> AsyncIterator[str]:
    provider = f"http://127.0.0.1:{provider_port}/v1"
    if SERVERS[name].launcher == "py":
        async with pyservers.start(name, provider, log_dir) as url:
            yield url
    else:
        async with node.start(name, provider, log_dir) as url:
            yield url


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
    port = free_port()
    # A fresh server per case: some of them exit on purpose when the provider drops.
    async with _serve(case.server, port, tmp_path) as url:
        target = "ws" + url.removeprefix("http") if server.websocket else url
        profile = (
            readme_profile(tmp_path) if server.profile.startswith("README:") else server.profile
        )
        options = RunOptions(target=target, profile=profile, mock_port=port)
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
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def litellm_target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunOptions]:
    port = free_port()
    log_dir = tmp_path_factory.mktemp("litellm")
    model = "gpt-4o-mini"
    async with litellm.start(f"http://127.0.0.1:{port}/v1", log_dir, model) as (url, key):
        yield RunOptions(
            target=url,
            profile="openai",
            mock_port=port,
            target_model=model,
            headers={"Authorization": f"Bearer {key}"},
        )


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", LITELLM_CASES, ids=lambda c: c.scenario)
async def test_litellm_verdict(case: Case, litellm_target: RunOptions) -> None:
    result = await run_scenario(CATALOGUE[case.scenario], SEED, litellm_target)
    _check(result, case)
