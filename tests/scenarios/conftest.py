"""Fixtures for the stack, nginx and client tests: real processes on 127.0.0.1, always stopped."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from scenarios.stack.nginx import NginxUnavailable, find_nginx
from scenarios.stack.procs import ManagedProcess, start_process


@pytest.fixture
def nginx_binary() -> str:
    try:
        return find_nginx()
    except NginxUnavailable as exc:
        pytest.skip(f"nginx not available: {exc.reason}")


@pytest.fixture
async def mock_proc(tmp_path: Path) -> AsyncIterator[ManagedProcess]:
    """``python -m mockllm --port 0`` (seed 0); ``.url`` is its root URL."""
    proc = await start_process(
        "mockllm",
        [sys.executable, "-m", "mockllm", "--host", "127.0.0.1", "--port", "0", "--seed", "0"],
        log_dir=tmp_path,
    )
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
async def naive_proc(tmp_path: Path, mock_proc: ManagedProcess) -> AsyncIterator[ManagedProcess]:
    """The naive server in front of the mock; ``.url`` is its root URL."""
    assert mock_proc.url is not None
    proc = await start_process(
        "naive",
        [
            sys.executable,
            "-m",
            "reference_server.naive",
            "--port",
            "0",
            "--upstream",
            mock_proc.url.rstrip("/") + "/v1",
        ],
        log_dir=tmp_path,
    )
    try:
        yield proc
    finally:
        await proc.stop()
