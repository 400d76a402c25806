"""Live processes for the load-test tests: mockllm and the reference server, real CLIs.

Locust itself is never imported here (it monkey-patches the interpreter with gevent); tests
run it in a subprocess through ``streamharness load`` / ``bench``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mockllm.childproc import Child, start_child


def start_cli(argv: list[str], timeout_s: float = 30.0, env: dict[str, str] | None = None) -> Child:
    """Start ``python -m ...`` and wait for its ``listening on`` line."""
    return start_child(
        [sys.executable, "-m", *argv],
        timeout_s=timeout_s,
        env=env,
        stderr=subprocess.STDOUT,
        failure=lambda child: RuntimeError(f"{argv[0]} did not start: {child.text[-2000:]}"),
    )


@dataclass
class LiveStack:
    mock: str
    server: str


@pytest.fixture(scope="module")
def live_stack() -> Iterator[LiveStack]:
    mock = start_cli(["mockllm", "--host", "127.0.0.1", "--port", "0", "--directives"])
    try:
        server = start_cli(
            ["reference_server", "--host", "127.0.0.1", "--port", "0",
             "--upstream", f"{mock.url}/v1"]
        )  # fmt: skip
        try:
            yield LiveStack(mock.url, server.url)
        finally:
            server.stop()
    finally:
        mock.stop()
