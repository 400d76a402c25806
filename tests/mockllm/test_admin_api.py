"""The admin API: ledger list/filter/wait/clear, preview, config, health, stats."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from mockllm import fingerprint, redact_header
from mockllm.admin import MAX_WAIT_S
from mockllm.client import MockAdmin, MockAdminError
from tests.support import wait_for_async

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Hi"}]


def test_health(admin: MockAdmin) -> None:
    assert admin.health() == {"status": "ok"}


def test_ledger_records_body_headers_text_and_timings(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    completion = client.chat.completions.create(
        model="mock-fast", messages=MESSAGES, extra_headers={"X-Mock-Tokens": "4"}
    )
    (entry,) = admin.requests()
    assert entry["id"] == completion.id
    assert entry["seq"] == 1
    assert entry["model"] == "mock-fast" and entry["stream"] is False
    assert entry["status"] == 200 and entry["outcome"] == "completed"
    assert entry["tokens_sent"] == 4
    assert entry["text"] == completion.choices[0].message.content
    assert entry["body"]["messages"] == MESSAGES
    assert entry["headers"]["x-mock-tokens"] == "4"
    assert entry["started_at"] <= entry["first_token_at"] <= entry["ended_at"]


def test_list_filters_newest_last(client: openai.OpenAI, admin: MockAdmin) -> None:
    for model in ("mock-instant", "gpt-4o-mini", "mock-instant"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="unknown", messages=MESSAGES)
    entries = admin.requests()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert len(admin.requests(model="mock-instant")) == 2
    assert [e["status"] for e in admin.requests(outcome="rejected")] == [404]
    assert len(admin.requests(since_id=entries[1]["id"])) == 2
    assert len(admin.requests(since_id="3")) == 1
    admin.clear()
    assert admin.requests() == []


def test_wait_returns_when_the_condition_holds(mock_url: str, admin: MockAdmin) -> None:
    # The request is on its way before wait() is called, but its first token is 600 ms off, so
    # the entry cannot be "completed" yet: wait() must block, then return when it completes.
    def slow_request() -> None:
        httpx.post(
            f"{mock_url}/v1/chat/completions",
            json={"model": "mock-fast", "messages": MESSAGES},
            headers={"X-Mock-Ttft-Ms": "600"},
        )

    thread = threading.Thread(target=slow_request)
    thread.start()
    start = time.monotonic()
    entries = admin.wait(1, outcome="completed", model="mock-fast", timeout=10)
    waited = time.monotonic() - start
    thread.join()
    assert entries[0]["model"] == "mock-fast"
    assert 0.3 < waited < 5  # it blocked for the first token, and no longer than needed


def test_wait_times_out_with_408(admin: MockAdmin, mock_url: str) -> None:
    with pytest.raises(TimeoutError):
        admin.wait(1, timeout=0.2)
    response = httpx.post(f"{mock_url}/_mock/requests/wait", json={"count": "x"})
    assert response.status_code == 400


def test_preview_is_exactly_what_streams_and_is_not_recorded(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 6}
    preview = admin.preview(body, headers={"X-Mock-Seed": "99"})
    assert admin.requests() == []
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=6,
        stream=True,
        extra_headers={"X-Mock-Seed": "99"},
    )
    tokens = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert preview["tokens"] == tokens
    assert preview["text"] == "".join(tokens)
    assert preview["finish_reason"] == "length"


def test_config_changes_and_reset(client: openai.OpenAI, admin: MockAdmin) -> None:
    before = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    admin.configure(seed=12345, profile="fast")
    assert admin.config()["profile"] == "fast"
    after = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert after.choices[0].message.content != before.choices[0].message.content
    with pytest.raises(MockAdminError) as info:
        admin.configure(profile="glacial")
    assert info.value.status == 400
    admin.reset()
    assert admin.config()["profile"] == "instant"
    again = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert again.choices[0].message.content == before.choices[0].message.content


def test_admin_client_translates_connection_errors() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        admin = MockAdmin(f"http://127.0.0.1:{port}", timeout=2)
        with pytest.raises(MockAdminError) as info:
            admin.health()
        admin.close()
    assert info.value.status == 0


def test_ledger_keeps_fingerprints_of_credentials_not_the_keys(
    mock_url: str, admin: MockAdmin
) -> None:
    key = "sk-proj-streamharness-0123456789abcdef"
    headers = {
        "x-api-key": key,
        "api-key": key,
        "x-goog-api-key": key,
        "cookie": f"session={key}",
    }
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key=key, max_retries=0) as sdk:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
        with pytest.raises(openai.NotFoundError):  # a rejected request is recorded too
            sdk.chat.completions.create(model="unknown", messages=MESSAGES)
    # The SDK drops Proxy-Authorization; a proxy in front of the provider would send it.
    httpx.post(
        f"{mock_url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": MESSAGES},
        headers={"Proxy-Authorization": f"Basic {key}"},
    )
    served = httpx.get(f"{mock_url}/_mock/requests").text
    assert key not in served and key[-8:] not in served
    sdk_ok, sdk_rejected, proxied = admin.requests()
    for entry in (sdk_ok, sdk_rejected):
        recorded = entry["headers"]
        assert recorded["authorization"] == "Bearer " + fingerprint(key)
        assert recorded["authorization"] == redact_header("Authorization", f"Bearer {key}")
    for name in ("x-api-key", "api-key", "x-goog-api-key"):
        assert sdk_ok["headers"][name] == fingerprint(key)
    assert sdk_ok["headers"]["cookie"] == fingerprint(f"session={key}")
    assert proxied["headers"]["proxy-authorization"] == "Basic " + fingerprint(key)
    waited = httpx.post(f"{mock_url}/_mock/requests/wait", json={"count": 3}).text
    assert key not in waited


def test_wait_timeout_is_capped(mock_url: str, admin: MockAdmin) -> None:
    url = f"{mock_url}/_mock/requests/wait"
    for timeout in (1e12, MAX_WAIT_S + 1, -1, "10", True):
        response = httpx.post(url, json={"count": 1, "timeout": timeout})
        assert response.status_code == 400, timeout
        error = response.json()["error"]
        assert error["param"] == "timeout" and f"{MAX_WAIT_S:g}" in error["message"]
    response = httpx.post(url, content=b'{"count": 1, "timeout": 1e400}')
    assert response.status_code == 400
    assert admin.stats()["waiters"] == 0


async def test_a_wait_ends_when_its_client_leaves(mock_url: str, admin: MockAdmin) -> None:
    async with httpx.AsyncClient(base_url=mock_url, timeout=30) as http:

        async def stats() -> dict[str, Any]:
            return dict((await http.get("/_mock/stats")).json())

        assert (await stats())["waiters"] == 0
        async with httpx.AsyncClient(base_url=mock_url, timeout=30) as waiting_client:
            waits = [
                asyncio.ensure_future(
                    waiting_client.post(
                        "/_mock/requests/wait", json={"count": 99, "timeout": MAX_WAIT_S}
                    )
                )
                for _ in range(3)
            ]
            await wait_for_async(stats, what="3 waiters", until=lambda s: s["waiters"] == 3)
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        # The clients' connections are closed: the mock ends their waits at once, not after
        # MAX_WAIT_S.
        await wait_for_async(
            stats, timeout_s=5, what="no waiter", until=lambda s: s["waiters"] == 0
        )


def test_stats(client: openai.OpenAI, admin: MockAdmin) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert admin.stats() == {
        "active_streams": 0,
        "waiters": 0,
        "ledger_entries": 1,
        "ledger_size": 20_000,
    }
