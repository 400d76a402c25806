"""Fixtures for mockllm's own tests: the real CLI in a subprocess, and SDK clients for it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import openai
import pytest

from mockllm.client import MockAdmin

_LISTENING = re.compile(r"listening on (http://\S+)")


def start_cli(*args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m mockllm --port 0 ...`` and return it with its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockllm", "--port", "0", *args],
        stdout=subprocess.PIPE,
        # stderr is inherited: pytest shows it on failure and a full pipe can never block us.
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = _LISTENING.search(line)
        if match:
            return proc, match.group(1)
    proc.kill()
    proc.communicate(timeout=5)
    raise RuntimeError(f"mockllm did not start (exit code {proc.returncode})")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    proc, url = start_cli("--seed", "11")
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture
def admin(mock_url: str) -> Iterator[MockAdmin]:
    client = MockAdmin(mock_url)
    client.reset()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(mock_url: str, admin: MockAdmin) -> Iterator[openai.OpenAI]:
    # Depending on ``admin`` resets the server: no rule or config leaks between tests.
    # max_retries=0: a fault must surface as the exception a user would see on the first try.
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(mock_url: str, admin: MockAdmin) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{mock_url}/v1", api_key="test", max_retries=0)
