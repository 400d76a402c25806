"""Live processes for the load-test tests: mockllm and the reference server, real CLIs.

Locust itself is never imported here (it monkey-patches the interpreter with gevent); tests
run it in a subprocess through ``streamharness load`` / ``bench``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

_LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class LiveProcess:
    proc: subprocess.Popen[str]
    url: str
    output: list[str]
    reader: threading.Thread

    def stop(self) -> None:
        stop(self.proc)
        self.reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_cli(
    argv: list[str], timeout_s: float = 30.0, env: dict[str, str] | None = None
) -> LiveProcess:
    """Start ``python -m ...`` and wait for its ``listening on`` line (on a reader thread, so
    a silent child cannot block the test past ``timeout_s``)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            m = _LISTENING.search(line)
            if m and not url:
                url.append(m.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    live = LiveProcess(proc, url[0] if url else "", output, reader)
    if not found.wait(timeout_s) or not url:
        live.stop()
        raise RuntimeError(f"{argv[0]} did not start: {''.join(output)[-2000:]}")
    live.url = url[0]
    return live


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
