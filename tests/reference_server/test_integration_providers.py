"""The WebSocket protocol end to end over each provider adapter, against the live mock.

One reference server per provider (``--provider``), all calling the same mock, which serves
every format on one address; each behaviour is proven by the mock's ledger (the request's
format, its outcome, a client disconnect and its time), not by what the server says.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.reference_server.live import Ledger, Process, ServerFactory
from tests.reference_server.wsclient import V1Client, assert_dense, prompt

pytestmark = pytest.mark.integration

# provider -> (the path of its base URL, the format the mock's ledger records)
PROVIDERS = {
    "openai": ("/v1", "openai_chat"),
    "anthropic": ("/v1", "anthropic_messages"),
    "ollama": ("/api", "ollama_chat"),
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def relay(provider: str, mock: Process, server_factory: ServerFactory) -> Process:
    base, _ = PROVIDERS[provider]
    return server_factory(
        upstream=mock.url + base,
        provider=provider,
        upstream_read_timeout_s=1,
        upstream_max_retries=2,
        upstream_max_retry_after_s=5,
    )


def only_entry(ledger: Ledger, provider: str, count: int = 1) -> list[dict[str, object]]:
    entries = ledger.wait(count)
    assert {e["format"] for e in entries} == {PROVIDERS[provider][1]}, entries
    return entries


async def test_tokens_finish_and_usage(relay: Process, ledger: Ledger, provider: str) -> None:
    client = await V1Client.open(relay.ws_url)
    messages = [{"role": "system", "content": "Be brief."}, *prompt("hello", tokens=7)]
    await client.chat("a", messages)
    got = await client.collect("a")
    assert got.terminal is not None and got.terminal["type"] == "end", got.terminal
    assert_dense(got.indexes, 7)
    [entry] = only_entry(ledger, provider)
    assert entry["outcome"] == "completed" and got.text == entry["text"]
    assert got.terminal["finish_reason"] == "stop"
    usage = entry["usage"]
    assert isinstance(usage, dict)
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    # OpenAI's usage is relayed whole (its details too); the others carry these counts.
    assert {k: got.terminal["usage"][k] for k in counts} == {k: usage[k] for k in counts}
    await client.close()


async def test_a_tool_call_streams_as_tool_call_frames(
    relay: Process, ledger: Ledger, provider: str
) -> None:
    client = await V1Client.open(relay.ws_url)
    # The mock's tool control, not tool_choice: Ollama's API has no tool_choice.
    await client.chat("t", prompt("weather?", tool="get_weather"), tools=[WEATHER])
    got = await client.collect("t")
    assert got.terminal is not None and got.terminal["type"] == "end", got.terminal
    assert got.terminal["finish_reason"] == "tool_calls"
    calls = [m for m in got.tokens if m["type"] == "tool_call"]
    assert calls and {c["call_index"] for c in calls} == {0}
    assert calls[0]["name"] == "get_weather"
    # Ollama's calls carry no id; the others' first fragment does.
    assert ("call_id" in calls[0]) == (provider != "ollama")
    arguments = json.loads("".join(c["arguments"] for c in calls))
    assert isinstance(arguments.get("city"), str)
    only_entry(ledger, provider)
    await client.close()


async def test_cancel_closes_the_provider_request(
    relay: Process, ledger: Ledger, provider: str
) -> None:
    client = await V1Client.open(relay.ws_url)
    await client.chat("c", prompt("long", tokens=500, itl_ms=20))
    await client.collect("c", stop_after_tokens=3)
    cancelled_at = time.time()
    await client.send(type="cancel", id="c")
    got = await client.collect("c")
    assert got.terminal is not None and got.terminal["type"] == "cancelled"
    [entry] = ledger.wait(1, outcome="client_disconnected")
    assert entry["format"] == PROVIDERS[provider][1]
    # Measured at about 1 ms; the band leaves room for a busy 2-core machine.
    ended_at = entry["ended_at"]
    assert isinstance(ended_at, float) and ended_at - cancelled_at < 0.5
    await client.assert_usable()
    await client.close()


async def test_provider_error_mid_stream_is_a_v1_error_frame(
    relay: Process, ledger: Ledger, provider: str
) -> None:
    client = await V1Client.open(relay.ws_url)
    await client.chat("e", prompt("mid", tokens=20, fault="error_after=3"))
    got = await client.collect("e")
    assert got.terminal is not None and got.terminal["type"] == "error", got.terminal
    assert got.terminal["code"] == "upstream_error" and got.terminal["retryable"] is True
    assert_dense(got.indexes, 3)
    [entry] = only_entry(ledger, provider)
    assert entry["outcome"] == "fault:error_after"
    assert len(ledger.requests()) == 1  # tokens reached the client: not asked again
    await client.close()


@pytest.mark.parametrize("status", [429, 529])
async def test_overloaded_before_the_first_token_is_retried(
    relay: Process, ledger: Ledger, provider: str, status: int
) -> None:
    ledger.add_rule(
        {"match": {"prompt": "busy"}, "times": 2, "respond": {"fault": f"status={status}"}}
    )
    client = await V1Client.open(relay.ws_url)
    await client.chat("r", prompt("busy", tokens=4))
    got = await client.collect("r")
    assert got.terminal is not None and got.terminal["type"] == "end", got.terminal
    assert_dense(got.indexes, 4)
    entries = only_entry(ledger, provider, 3)
    assert [e["status"] for e in entries] == [status, status, 200]
    await client.close()


async def test_a_client_error_is_not_retried(relay: Process, ledger: Ledger, provider: str) -> None:
    client = await V1Client.open(relay.ws_url)
    await client.chat("x", prompt("hi"), model="no-such-model")
    got = await client.collect("x")
    assert got.terminal is not None and got.terminal["type"] == "error", got.terminal
    assert got.terminal["retryable"] is False and "404" in got.terminal["message"]
    assert len(ledger.requests()) == 1
    await client.close()


async def test_a_tool_round_trip_conversation_is_accepted(
    relay: Process, ledger: Ledger, provider: str
) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "[[mock tokens=4]] Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
    ]
    client = await V1Client.open(relay.ws_url)
    await client.chat("rt", messages, tools=[WEATHER])
    got = await client.collect("rt")
    assert got.terminal is not None and got.terminal["type"] == "end", got.terminal
    [entry] = only_entry(ledger, provider)
    assert entry["status"] == 200 and entry["outcome"] == "completed"
    await client.close()
