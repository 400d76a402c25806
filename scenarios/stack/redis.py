"""Debian's ``redis-server`` for the shared stream store: a free port, a temporary directory.

The server's multi-worker stacks keep their streams in Redis (``reference_server/redis_store.py``).
The harness starts its own ``redis-server`` in the foreground as a child process: bound to
127.0.0.1 on a free port, working directory under the run's log directory, no persistence
(``save ""``, no AOF: a restart is a real loss, which is what the restart scenario needs), and
a memory cap (``maxmemory``) with ``volatile-ttl`` eviction, since every key the store writes
has a TTL. It never touches a system Redis (the Debian service stays stopped).

Errors: :class:`RedisUnavailable` (no binary; the scenarios that need it are skipped with the
reason) under :class:`~scenarios.stack.procs.StackError`.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from scenarios.stack.procs import (
    ManagedProcess,
    StackError,
    free_port,
    restart_process,
    start_process,
)

__all__ = ["READY_RE", "RedisServer", "RedisUnavailable", "find_redis", "redis_argv"]

DEFAULT_REDIS_PATHS = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
READY_RE = re.compile(r"(Ready to accept connections)")
MAXMEMORY = "256mb"


class RedisUnavailable(StackError):
    """No usable redis-server binary here (scenarios needing it are skipped)."""


def find_redis(binary: str | None = None) -> str:
    """Path of ``redis-server``, or :class:`RedisUnavailable` naming the places looked at."""
    for candidate in (binary,) if binary else ("redis-server", *DEFAULT_REDIS_PATHS):
        found = shutil.which(candidate)
        if found is not None:
            return found
    raise RedisUnavailable(
        f"redis-server is not installed ({binary or 'not on PATH, nor at '}"
        + ("" if binary else ", ".join(DEFAULT_REDIS_PATHS))
        + "); install it with 'apt-get install redis-server' (Debian/Ubuntu) "
        "or run scripts/bootstrap.sh"
    )


def redis_argv(binary: str, port: int, directory: Path) -> list[str]:
    """The command line of a private, non-persistent redis-server on 127.0.0.1:``port``."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", "",
        "--maxmemory", MAXMEMORY,
        "--maxmemory-policy", "volatile-ttl",
    ]  # fmt: skip


class RedisServer:
    """A running redis-server: ``await RedisServer.start(log_dir=...)``, then ``await stop()``."""

    def __init__(self, process: ManagedProcess, port: int, directory: Path) -> None:
        self.process = process
        self.port = port
        self.directory = directory

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    async def start(
        cls, *, log_dir: Path, binary: str | None = None, ready_timeout_s: float = 10.0
    ) -> RedisServer:
        path = find_redis(binary)
        directory = log_dir / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        process = await start_process(
            "redis",
            redis_argv(path, port, directory),
            log_dir=log_dir,
            ready_pattern=READY_RE,
            ready_timeout_s=ready_timeout_s,
        )
        return cls(process, port, directory)

    async def restart(self, ready_timeout_s: float = 10.0) -> None:
        """Stop and start again on the same port: every key is gone (no persistence)."""
        await self.process.stop()
        await restart_process(self.process, ready_timeout_s=ready_timeout_s, ready_pattern=READY_RE)

    async def stop(self, timeout_s: float = 5.0) -> int | None:
        return await self.process.stop(timeout_s)
