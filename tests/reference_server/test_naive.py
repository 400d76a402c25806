"""The naive server does what the tutorial does, flaws included: each flaw shown on live processes.

These tests pin the flaws down on purpose: the scenario catalogue relies on the naive server
failing in exactly these ways (an accidental fix would make those scenarios meaningless).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from scenarios.clients import TutorialToken
from scenarios.clients.aio import TutorialConnection, stream_tutorial
from scenarios.stack import Stack, StackSpec

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "tell me a story"}]
OTHER = [{"role": "user", "content": "something else entirely"}]
SLOW = "mock-realistic"  # TTFT 390 ms, then 12.3 ms per token, 32 tokens


@pytest.fixture
async def naive(tmp_path: Path) -> AsyncIterator[Stack]:
    async with Stack(StackSpec(target="naive"), log_dir=tmp_path) as stack:
        yield stack
    assert stack.server is not None and stack.server.exit_codes == [0]  # clean SIGTERM exit


async def mock_answer(stack: Stack, messages: list[dict[str, str]]) -> str:
    client = openai.AsyncOpenAI(base_url=stack.upstream_url, api_key="unused", max_retries=0)
    async with client:
        chunks = await client.chat.completions.create(
            model="mock-instant",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


async def upstream_requests(stack: Stack) -> int:
    """How many chat requests the mock's ledger has seen."""
    async with httpx.AsyncClient() as http:
        return len((await http.get(f"{stack.mock_url}/_mock/requests")).json()["requests"])


async def test_announces_itself_and_streams_with_in_band_end(naive: Stack) -> None:
    assert naive.server is not None
    assert "naive listening on http://127.0.0.1:" in naive.server.log_path.read_text()
    expected = await mock_answer(naive, PROMPT)
    rec = await stream_tutorial(naive.client_ws_url, PROMPT, model=SLOW, timeout_s=15)
    assert (rec.outcome, rec.finish_reason, rec.text) == ("completed", "end_marker", expected)
    # A client that waits for an explicit end never gets one and sees "[END]" as text.
    strict = await stream_tutorial(
        naive.client_ws_url, PROMPT, model="mock-instant", end_marker=None, timeout_s=1.5
    )
    assert strict.outcome == "timeout"
    assert strict.text == expected + "[END]"


async def test_new_message_cancels_the_running_stream(naive: Stack) -> None:
    expected_other = await mock_answer(naive, OTHER)
    async with await TutorialConnection.open(naive.client_ws_url, "c1") as conn:
        first = await conn.send(PROMPT, model=SLOW)
        assert await conn.wait_until(lambda: len(first.arrivals) >= 2, 10)
        second = await conn.send(OTHER, model=SLOW)
        await conn.wait(second, 15)
    assert first.outcome == "cancelled"  # superseded: it never gets its end
    assert second.outcome == "completed"
    assert second.text.endswith(expected_other)


async def test_path_id_is_trusted_second_socket_takes_the_tokens(naive: Stack) -> None:
    async with (
        await TutorialConnection.open(naive.client_ws_url, "same-id") as victim,
        await TutorialConnection.open(naive.client_ws_url, "other-id") as bystander,
    ):
        rec = await victim.send(PROMPT, model=SLOW)
        assert await victim.wait_until(lambda: len(rec.arrivals) >= 2, 10)
        async with await TutorialConnection.open(naive.client_ws_url, "same-id") as thief:
            # The thief sent nothing, yet the victim's tokens (and its end marker) arrive here.
            assert await thief.wait_until(
                lambda: TutorialToken("[END]") in thief.recorder.stray, 10
            )
            await victim.wait(rec, 0.5)
        assert rec.outcome == "timeout"  # the victim never sees its end
        assert bystander.recorder.stray == []


async def test_resend_after_reconnect_starts_a_second_generation(naive: Stack) -> None:
    before = await upstream_requests(naive)
    first = await TutorialConnection.open(naive.client_ws_url, "flaky")
    rec = await first.send(PROMPT, model=SLOW)
    assert await first.wait_until(lambda: len(rec.arrivals) >= 3, 10)
    await first.drop()
    async with await TutorialConnection.open(naive.client_ws_url, "flaky") as second:
        resent = await second.send(PROMPT, model=SLOW)
        await second.wait(resent, 15)
    # No idempotency key: the resend is a second upstream generation. (What the client then
    # sees depends on a race: when the old generation still finds the id registered, its
    # tail and its [END] land on the new socket and the answer comes out cut or mixed.)
    assert await upstream_requests(naive) - before == 2
    assert resent.outcome == "completed"


async def test_upstream_error_is_printed_and_the_socket_just_stops(tmp_path: Path) -> None:
    spec = StackSpec(target="naive", upstream_proxy=True)
    async with Stack(spec, log_dir=tmp_path) as stack:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{stack.proxy_api_url}/proxies/{stack.upstream_proxy_name}",
                json={"enabled": False},
            )
            assert r.status_code == 200
        async with await TutorialConnection.open(stack.client_ws_url, "u") as conn:
            rec = await conn.send(PROMPT, model=SLOW)
            await conn.wait(rec, 2.0)
            assert rec.outcome == "timeout" and rec.arrivals == []
            assert conn.close_code is None  # still open: no error message, no close
        assert stack.server is not None
        assert "error streaming for u" in stack.server.log_path.read_text()
