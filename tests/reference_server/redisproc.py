"""A private redis-server for the tests (the harness's own argv: 127.0.0.1, temp dir, no
persistence), started with ``subprocess`` and stopped by the fixture that started it."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mockllm.childproc import free_port, stop_process
from scenarios.stack.redis import RedisUnavailable, find_redis, redis_argv
from tests.support import wait_for


@dataclass
class RedisProcess:
    proc: subprocess.Popen[bytes]
    port: int
    directory: Path
    binary: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> int:
        return stop_process(self.proc, 5.0)

    def start_again(self) -> None:
        """Same port, empty data (a restart without persistence)."""
        self.proc = _spawn(self.binary, self.port, self.directory)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _spawn(binary: str, port: int, directory: Path) -> subprocess.Popen[bytes]:
    log = (directory / "redis.log").open("ab")
    proc = subprocess.Popen(
        redis_argv(binary, port, directory),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        wait_for(lambda: proc.poll() is not None or _answers_ping(port), 10, what="PONG")
    except AssertionError:
        stop_process(proc, 2.0)
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"redis-server exited: {(directory / 'redis.log').read_text()[-1000:]}")
    return proc


def start_redis(directory: Path) -> RedisProcess:
    """A running redis-server, or a skip that says why (no binary)."""
    try:
        binary = find_redis()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    port = free_port()
    return RedisProcess(_spawn(binary, port, directory), port, directory, binary)
