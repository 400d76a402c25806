"""Live processes for the integration tests: mockllm and reference_server on port 0.

Every process is started as a subprocess of our CLIs and stopped by the fixture's teardown.
The mock runs with ``--directives`` so a test steers one request's timing and faults through
the server with an in-prompt ``[[mock ...]]`` directive, the way a real client would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockllm.childproc import start_child, stop_process
from tests.reference_server.wsclient import abort_leftover_connections


@pytest.fixture(autouse=True)
async def _no_leftover_connections() -> AsyncIterator[None]:
    """Abort, on the test's own loop, the V1Client sockets a failed test did not close."""
    yield
    if abort_leftover_connections():
        await asyncio.sleep(0)  # abort() closes the socket in a loop callback


@dataclass
class Process:
    proc: subprocess.Popen[str]
    url: str
    log: Path

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    def stop(self, timeout: float = 10.0) -> int:
        return stop_process(self.proc, timeout)


def start_process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    with log.open("w") as handle:  # the child keeps its own copy of the descriptor
        child = start_child(
            [sys.executable, *args],
            env=env,
            stderr=handle,
            failure=lambda _: RuntimeError(f"{args[:3]} did not start: {log.read_text()[-2000:]}"),
        )
    return Process(child.proc, child.url, log)


@pytest.fixture(scope="session")
def mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    log = tmp_path_factory.mktemp("mock") / "mockllm.log"
    process = start_process(["-m", "mockllm", "--port", "0", "--directives"], log)
    yield process
    process.stop()


class Ledger:
    """The mock's request ledger (admin API)."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=30)

    def clear(self) -> None:
        self.client.delete("/_mock/requests").raise_for_status()
        self.client.delete("/_mock/rules").raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        response = self.client.get("/_mock/requests")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()["requests"]
        return entries

    def wait(
        self, count: int = 1, outcome: str | None = None, timeout: float = 10
    ) -> list[dict[str, Any]]:
        response = self.client.post(
            "/_mock/requests/wait", json={"count": count, "outcome": outcome, "timeout": timeout}
        )
        assert response.status_code == 200, f"ledger wait timed out: {self.requests()}"
        entries: list[dict[str, Any]] = response.json()["requests"]
        return entries

    def add_rule(self, rule: dict[str, Any]) -> None:
        self.client.post("/_mock/rules", json=rule).raise_for_status()


@pytest.fixture
def ledger(mock: Process) -> Iterator[Ledger]:
    ledger = Ledger(mock.url)
    ledger.clear()
    yield ledger
    ledger.client.close()


ServerFactory = Callable[..., Process]

# Settings shared by the test servers: quick heartbeat and expiry so tests stay short.
BASE_ENV = {
    "STREAMHARNESS_SERVER_HEARTBEAT_INTERVAL_S": "5",
    "STREAMHARNESS_SERVER_RESUME_GRACE_S": "5",
    "STREAMHARNESS_SERVER_UPSTREAM_BACKOFF_BASE_S": "0.01",
    "STREAMHARNESS_SERVER_MESSAGES_PER_SECOND": "1000",
    "STREAMHARNESS_SERVER_MESSAGE_BURST": "1000",
    "STREAMHARNESS_SERVER_SHUTDOWN_GRACE_S": "2",
}


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
