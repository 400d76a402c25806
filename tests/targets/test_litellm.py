"""The LiteLLM proxy in front of the mock: it streams the answer, and what it does with faults.

One mock and one proxy run for the whole module (real processes, stopped by the fixtures; the
first run installs LiteLLM into its cache venv, about a minute). Each test resets the mock and
installs rules, since LiteLLM does not forward ``X-Mock-*`` headers. The assertions document
what LiteLLM (``litellm.LITELLM_VERSION``) does, observed on the wire and in the mock's ledger:

- (a) a client that closes the stream is seen by the provider at once (``client_disconnected``
  within a fraction of a second, a token or two after what the client read);
- (b) a provider that drops mid-stream: the client gets every token the provider wrote, then one
  in-band error event ``data: {"error": {...APIConnectionError..., "code": "500"}}`` and a clean
  end of the body (HTTP 200, chunked terminator, no ``data: [DONE]``); the ``openai`` SDK raises
  ``APIError`` from it;
- (c) a 429 with ``Retry-After`` is retried by LiteLLM's router after the announced delay (the
  client sees only the answer); a provider that keeps refusing gets 3 attempts, then the client
  gets the 429 with ``llm_provider-retry-after`` instead of ``retry-after``.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from mockllm import fingerprint
from scenarios.stack.procs import start_process
from tests.support import wait_for_async
from tests.targets import litellm

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    # A first run installs LiteLLM (about a minute on a fast index) inside the first test.
    pytest.mark.timeout(litellm.INSTALL_TIMEOUT_S + 300),
    # One worker runs them all (``--dist loadgroup``), so the proxy starts once (about 8 s
    # and as many CPU seconds), not once on every worker that gets one of them.
    pytest.mark.xdist_group("litellm_proxy"),
]

MODEL = "gpt-4o-mini"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
BODY = {"model": MODEL, "messages": MESSAGES, "stream": True}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("litellm")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mock_url(logs: Path) -> AsyncIterator[str]:
    argv = [sys.executable, "-m", "mockllm", "--host", "127.0.0.1", "--port", "0"]
    proc = await start_process("mockllm", [*argv, "--model", MODEL], log_dir=logs)
    try:
        assert proc.url is not None
        yield proc.url.rstrip("/")
    finally:
        await proc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def proxy(mock_url: str, logs: Path) -> AsyncIterator[tuple[str, str]]:
    """(base_url, master_key) of the proxy in front of ``mock_url/v1``."""
    async with litellm.start(f"{mock_url}/v1", logs, MODEL) as (base_url, master_key):
        yield base_url, master_key


@pytest_asyncio.fixture(loop_scope="module")
async def admin(mock_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the mock's root, the mock reset (ledger, rules) before the test."""
    async with httpx.AsyncClient(base_url=mock_url, timeout=10.0, trust_env=False) as client:
        (await client.post("/_mock/reset")).raise_for_status()
        yield client


def sdk(proxy: tuple[str, str], *, path: str = "/v1") -> openai.AsyncOpenAI:
    base_url, master_key = proxy
    return openai.AsyncOpenAI(base_url=base_url + path, api_key=master_key, max_retries=0)


async def add_rules(admin: httpx.AsyncClient, rules: list[dict[str, Any]]) -> None:
    (await admin.post("/_mock/rules", json=rules)).raise_for_status()


async def ledger(admin: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await admin.get("/_mock/requests")
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


async def ended(admin: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """The ledger once it holds ``count`` entries that all ended."""

    async def probe() -> list[dict[str, Any]]:
        entries = await ledger(admin)
        done = len(entries) >= count and all(e["outcome"] for e in entries)
        return entries if done else []

    return await wait_for_async(probe, timeout_s=5, what=f"{count} ended ledger entries")


async def stream_text(client: openai.AsyncOpenAI) -> tuple[str, list[Any]]:
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def sse_events(body: bytes) -> list[bytes]:
    assert body.endswith(b"\n\n"), body[-200:]
    return body[:-2].split(b"\n\n")


def content_of(events: list[bytes]) -> str:
    text = ""
    for event in events:
        data = json.loads(event.removeprefix(b"data: "))
        if data.get("choices"):
            text += data["choices"][0]["delta"].get("content") or ""
    return text


async def test_streams_the_mock_answer(proxy: tuple[str, str], admin: httpx.AsyncClient) -> None:
    async with sdk(proxy) as client:
        text, chunks = await stream_text(client)
    async with sdk(proxy, path="") as client:  # the routes exist without /v1 as well
        text_at_root, _ = await stream_text(client)
    first, second = await ended(admin, 2)
    assert (first["outcome"], second["outcome"]) == ("completed", "completed")
    assert text == first["text"] and text_at_root == second["text"]
    assert text and text == text_at_root  # same request, same seed: same answer
    assert {c.model for c in chunks} == {MODEL}
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The provider sees the configured key, not the master key (the ledger keeps its
    # fingerprint), and is asked for usage.
    assert first["headers"]["authorization"] == "Bearer " + fingerprint("sk-streamharness-provider")
    assert first["model"] == MODEL
    assert first["body"]["stream_options"] == {"include_usage": True}
    # ...which the proxy keeps to itself: the client did not ask for it.
    assert all(c.usage is None for c in chunks)


async def test_master_key_is_required(proxy: tuple[str, str], admin: httpx.AsyncClient) -> None:
    base_url, master_key = proxy
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False) as http:
        wrong = await http.post(
            "/v1/chat/completions", json=BODY, headers={"Authorization": "Bearer sk-wrong"}
        )
        missing = await http.post("/v1/chat/completions", json=BODY)
        models = await http.get("/v1/models", headers={"Authorization": f"Bearer {master_key}"})
    # Without a database every key but the master key is "unknown": 400, not 401.
    assert wrong.status_code == 400
    assert wrong.json()["error"]["type"] == "no_db_connection"
    # No Authorization header: 500, because the auth error handler imports ``prisma``, which
    # is in the ``extra-proxy`` extra, not in ``proxy`` (ModuleNotFoundError in the log).
    assert missing.status_code == 500
    assert [m["id"] for m in models.json()["data"]] == [MODEL]
    assert await ledger(admin) == []


async def test_started_offline(proxy: tuple[str, str], logs: Path) -> None:
    """Nothing was fetched from the internet (cost map, blog posts, ...), nothing failed to."""
    log = (logs / "litellm.log").read_text(errors="replace")
    assert "Set models:" in log and MODEL in log
    for needle in ("githubusercontent", "docs.litellm.ai", "Name or service not known"):
        assert needle not in log


async def test_client_disconnect_reaches_the_provider(
    proxy: tuple[str, str], admin: httpx.AsyncClient
) -> None:
    """(a) Closing the stream after 3 chunks stops the provider's stream within moments."""
    await add_rules(admin, [{"respond": {"tokens": 60, "itl_ms": 20}}])
    received = ""
    async with sdk(proxy) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = 0
        async for chunk in stream:
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
            chunks += 1
            if chunks == 3:  # the role chunk and two tokens
                break
        await stream.close()
        closed_at = time.time()
        (entry,) = await ended(admin, 1)
    assert entry["outcome"] == "client_disconnected"
    # Seen by the mock within a fraction of a second, well before the answer's end: LiteLLM
    # stops its provider stream about 0.25 s after the client closes (12 of 60 tokens here).
    assert entry["ended_at"] - closed_at < 1.0
    assert 2 <= entry["disconnect_index"] <= 30
    assert entry["tokens_sent"] == entry["disconnect_index"]
    assert entry["text"].startswith(received) and received


async def test_provider_drop_is_an_in_band_error_event(
    proxy: tuple[str, str], admin: httpx.AsyncClient
) -> None:
    """(b) The provider drops after 3 tokens: the tokens, one error event, a clean end."""
    await add_rules(admin, [{"respond": {"fault": "abort_after=3"}}])
    base_url, master_key = proxy
    headers = {"Authorization": f"Bearer {master_key}"}
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10.0, trust_env=False) as http,
        http.stream("POST", "/v1/chat/completions", json=BODY, headers=headers) as response,
    ):
        body = b"".join([part async for part in response.aiter_raw()])  # no read error
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    (entry,) = await ended(admin, 1)
    assert entry["outcome"] == "fault:abort_after" and entry["tokens_sent"] == 3
    events = sse_events(body)
    *data, error = events
    # The tokens LiteLLM had read before the drop reached the client (usually all three;
    # on a busy machine the drop can overtake some of them)...
    assert data and entry["text"].startswith(content_of(data))
    # ...then exactly these bytes, and the body ends (no [DONE]).
    assert error == (
        b'data: {"error": {"message": "litellm.APIConnectionError: APIConnectionError: '
        b'OpenAIException - Connection error.", "type": null, "param": null, "code": "500"}}'
    )
    assert b"[DONE]" not in body

    # The openai SDK raises APIError (not a status error) after yielding the tokens.
    received = ""
    async with sdk(proxy) as client:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as caught:
            async for chunk in stream:
                if chunk.choices:
                    received += chunk.choices[0].delta.content or ""
    assert type(caught.value) is openai.APIError
    assert "APIConnectionError" in caught.value.message
    _, second = await ended(admin, 2)
    assert second["text"].startswith(received)


async def test_rate_limit_is_retried_after_retry_after(
    proxy: tuple[str, str], admin: httpx.AsyncClient
) -> None:
    """(c) A 429 with Retry-After: 1 on the first request: LiteLLM waits 1 s and retries."""
    await add_rules(
        admin, [{"match": {"nth": 1}, "respond": {"fault": "status=429;retry_after=1"}}]
    )
    async with sdk(proxy) as client:  # max_retries=0: any retry is the proxy's
        text, _ = await stream_text(client)
    refused, answered = await ended(admin, 2)
    assert (refused["outcome"], refused["status"]) == ("fault:status", 429)
    assert answered["outcome"] == "completed" and text == answered["text"]
    assert 1.0 <= answered["started_at"] - refused["started_at"] < 3.0
    # The router retries; the openai SDK inside LiteLLM does not (retry count 0 both times).
    assert refused["headers"]["x-stainless-retry-count"] == "0"
    assert answered["headers"]["x-stainless-retry-count"] == "0"


async def test_persistent_rate_limit_reaches_the_client(
    proxy: tuple[str, str], admin: httpx.AsyncClient
) -> None:
    """(c') A provider that always answers 429: 3 attempts, then the 429 goes to the client."""
    await add_rules(admin, [{"respond": {"fault": "status=429;retry_after=1"}}])
    base_url, master_key = proxy
    headers = {"Authorization": f"Bearer {master_key}"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, trust_env=False) as http:
        response = await http.post("/v1/chat/completions", json=BODY, headers=headers)
    assert response.status_code == 429
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("throttling_error", "429")
    assert "retry-after" not in response.headers
    assert response.headers["llm_provider-retry-after"] == "1"
    entries = await ended(admin, 3)
    assert [e["status"] for e in entries] == [429, 429, 429]
    starts = [e["started_at"] for e in entries]
    assert all(1.0 <= b - a < 3.0 for a, b in itertools.pairwise(starts))
