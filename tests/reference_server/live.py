"""Live processes of the reference server's integration tests, and the mock's ledger.

The fixtures in ``conftest.py`` start them; tests import the types from here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mockllm.childproc import start_child, stop_process


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
