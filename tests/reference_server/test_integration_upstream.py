"""Upstream failures, through the server, proven by the mock's ledger."""

from __future__ import annotations

import socket
import time

import pytest

from tests.reference_server.live import Ledger, Process, ServerFactory
from tests.reference_server.wsclient import V1Client, assert_dense, prompt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fragile(server_factory: ServerFactory) -> Process:
    return server_factory(
        upstream_read_timeout_s=0.5, upstream_max_retries=2, upstream_max_retry_after_s=5
    )


async def run_chat(server: Process, messages: list[dict[str, str]], **extra: object) -> object:
    client = await V1Client.open(server.ws_url)
    await client.chat("x", messages, **extra)
    got = await client.collect("x")
    await client.close()
    return got


async def test_retries_before_first_token_then_succeeds(fragile: Process, ledger: Ledger) -> None:
    ledger.add_rule(
        {"match": {"prompt": "flaky-503"}, "times": 2, "respond": {"fault": "status=503"}}
    )
    client = await V1Client.open(fragile.ws_url)
    await client.chat("x", prompt("flaky-503", tokens=5))
    got = await client.collect("x")
    assert got.terminal is not None and got.terminal["type"] == "end"
    assert_dense(got.indexes, 5)
    entries = ledger.wait(3)
    assert [e["status"] for e in entries] == [503, 503, 200]
    await client.close()


async def test_retry_after_is_honoured(fragile: Process, ledger: Ledger) -> None:
    ledger.add_rule(
        {
            "match": {"prompt": "slow-429"},
            "times": 1,
            "respond": {"fault": "status=429;retry_after=1"},
        }
    )
    client = await V1Client.open(fragile.ws_url)
    await client.chat("x", prompt("slow-429", tokens=3))
    got = await client.collect("x")
    assert got.terminal is not None and got.terminal["type"] == "end"
    first, second = ledger.wait(2)
    gap = second["started_at"] - first["started_at"]
    assert 0.9 < gap < 3.0, gap
    await client.close()


async def test_retries_are_bounded(fragile: Process, ledger: Ledger) -> None:
    client = await V1Client.open(fragile.ws_url)
    await client.chat("x", prompt("always", fault="status=500"))
    got = await client.collect("x")
    assert got.terminal is not None and got.terminal["type"] == "error"
    assert got.terminal["code"] == "upstream_error" and got.terminal["retryable"] is True
    assert len(ledger.wait(3)) == 3  # 1 + upstream_max_retries
    await client.close()


async def test_too_long_retry_after_is_not_waited_for(fragile: Process, ledger: Ledger) -> None:
    client = await V1Client.open(fragile.ws_url)
    started = time.monotonic()
    await client.chat("x", prompt("later", fault="status=429;retry_after=60"))
    got = await client.collect("x")
    assert time.monotonic() - started < 3
    assert got.terminal is not None and got.terminal["code"] == "upstream_error"
    assert got.terminal["retryable"] is True
    assert len(ledger.requests()) == 1
    await client.close()


async def test_client_errors_are_not_retried(fragile: Process, ledger: Ledger) -> None:
    client = await V1Client.open(fragile.ws_url)
    await client.chat("x", prompt("hi"), model="no-such-model")
    got = await client.collect("x")
    assert got.terminal is not None and got.terminal["type"] == "error"
    assert got.terminal["retryable"] is False and "404" in got.terminal["message"]
    assert len(ledger.requests()) == 1
    await client.close()


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("abort_after=3", "upstream_error"),
        ("error_after=3", "upstream_error"),
        ("malformed_after=3", "upstream_error"),
        ("stall_after=3;seconds=5", "upstream_timeout"),
    ],
)
async def test_failure_after_first_token_ends_with_retryable_error(
    fragile: Process, ledger: Ledger, fault: str, code: str
) -> None:
    client = await V1Client.open(fragile.ws_url)
    started = time.monotonic()
    await client.chat("x", prompt("mid", tokens=20, fault=fault))
    got = await client.collect("x", wait_s=10)
    assert time.monotonic() - started < 4  # never a hang
    assert got.terminal is not None and got.terminal["type"] == "error", got.terminal
    assert got.terminal["code"] == code and got.terminal["retryable"] is True
    assert_dense(got.indexes, 3)
    assert len(ledger.requests()) == 1  # no retry once tokens reached the client
    await client.close()


async def test_unreachable_upstream_is_a_retryable_error(server_factory: ServerFactory) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = server_factory(upstream=f"http://127.0.0.1:{port}/v1", upstream_max_retries=1)
    client = await V1Client.open(server.ws_url)
    await client.chat("x", prompt("anyone?"))
    got = await client.collect("x")
    assert got.terminal is not None and got.terminal["type"] == "error"
    assert got.terminal["code"] == "upstream_error" and got.terminal["retryable"] is True
    assert "ConnectError" in got.terminal["message"]
    await client.assert_usable()
    await client.close()
