"""Live processes for the integration tests: mockllm and reference_server on port 0.

Every process is started as a subprocess of our CLIs and stopped by the fixture's teardown.
The mock runs with ``--directives`` so a test steers one request's timing and faults through
the server with an in-prompt ``[[mock ...]]`` directive, the way a real client would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.reference_server.live import BASE_ENV, Ledger, Process, ServerFactory, start_process
from tests.reference_server.redisproc import RedisProcess, start_redis
from tests.reference_server.wsclient import abort_leftover_connections


@pytest.fixture(autouse=True)
async def _no_leftover_connections() -> AsyncIterator[None]:
    """Abort, on the test's own loop, the V1Client sockets a failed test did not close."""
    yield
    if abort_leftover_connections():
        await asyncio.sleep(0)  # abort() closes the socket in a loop callback


@pytest.fixture(scope="session")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    log = tmp_path_factory.mktemp("mock") / "mockllm.log"
    process = start_process(["-m", "mockllm", "--port", "0", "--directives"], log)
    yield process
    process.stop()


@pytest.fixture
def ledger(mock: Process) -> Iterator[Ledger]:
    ledger = Ledger(mock.url)
    ledger.clear()
    yield ledger
    ledger.client.close()


@pytest.fixture(scope="module")
def server_factory(
    mock: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerFactory]:
    started: list[Process] = []

    def start(upstream: str | None = None, **settings: Any) -> Process:
        env = dict(BASE_ENV)
        env.update({f"STREAMHARNESS_SERVER_{k.upper()}": str(v) for k, v in settings.items()})
        log = tmp_path_factory.mktemp("server") / "reference_server.log"
        upstream = upstream or f"{mock.url}/v1"
        args = ["-m", "reference_server", "--port", "0", "--upstream", upstream]
        process = start_process(args, log, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def server(server_factory: ServerFactory) -> Process:
    return server_factory()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """One private redis-server for the session's tests (each test uses its own key prefix)."""
    process = start_redis(tmp_path_factory.mktemp("redis"))
    yield process
    process.stop()
