"""Child processes of the harness: start, wait until ready, capture logs, always stop.

The stack launcher starts mockllm, the server under test, the fault proxy and nginx through
:func:`start_process`. Guarantees, because a harness that leaks servers poisons the next run:

- stdout and stderr go to one log file per process (appended across restarts);
- our own Python servers are forked from a process that has imported them already
  (:mod:`scenarios.stack.zygote`), anything else is spawned;
- readiness is the ``<name> listening on http://...`` line our CLIs print
  (:data:`mockllm.childproc.LISTENING_RE`, re-exported here), or a TCP connect for nginx,
  with a deadline; a child that dies first raises with the tail of its log;
- every child gets its own session, so a terminal's Ctrl-C reaches only the harness, which
  then stops the children in order; ``PR_SET_PDEATHSIG`` makes the kernel send SIGTERM to a
  child whose parent died without cleaning up (SIGKILL of the runner), and an ``atexit`` hook
  kills whatever is still registered when the interpreter exits.

Errors::

    StackError
    ├── ProcessStartError   a child exited or stayed silent before it was ready
    └── (scenarios.stack.nginx) NginxUnavailable, NginxError
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mockllm.childproc import LISTENING_RE, die_with_parent, free_port
from scenarios.errors import HarnessError
from scenarios.stack.zygote import ForkedChild, fork_child, forkable

__all__ = [
    "LISTENING_RE",
    "ManagedProcess",
    "ProcessStartError",
    "StackError",
    "free_port",
    "start_process",
    "wait_for_port",
]


class StackError(HarnessError):
    """Root of the stack launcher's errors."""


class ProcessStartError(StackError):
    """A child process did not become ready."""


_live: set[ManagedProcess] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        proc.kill_now()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass(eq=False)
class ManagedProcess:
    """One child process and its log. ``url`` is what it announced (None for nginx)."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    process: asyncio.subprocess.Process | ForkedChild | None = None
    url: str | None = None
    starts: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
        module = forkable(self.argv)
        forked = None
        if module is not None:
            forked = await fork_child(module, self.argv[3:], self.env, self.log_path)
        if forked is not None:
            self.process = forked
        else:
            await self._spawn()
        self.starts += 1
        _live.add(self)

    async def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def wait_line(self, pattern: re.Pattern[str], timeout_s: float, offset: int) -> str:
        """Poll the log (from byte ``offset``) for ``pattern``; return its first group."""
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(OSError), self.log_path.open("rb") as f:
                f.seek(offset)
                m = pattern.search(f.read().decode(errors="replace"))
                if m is not None:
                    return m.group(1)
            self._check_alive()
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"{self.name} printed no 'listening on' line within {timeout_s} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            await asyncio.sleep(0.02)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise ProcessStartError(
                f"{self.name} exited with code {self.process.returncode} before it was ready; "
                f"log {self.log_path}:\n{_tail(self.log_path)}"
            )

    async def stop(self, timeout_s: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Graceful stop (``sig``), SIGKILL after ``timeout_s``; returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
                try:
                    async with asyncio.timeout(timeout_s):
                        await proc.wait()
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        finally:
            # Also reached when cancelled (Ctrl-C): never leave the child running.
            if proc.returncode is None:
                self.kill_now()
            else:
                _live.discard(self)
        assert proc.returncode is not None
        self.exit_codes.append(proc.returncode)
        return proc.returncode

    def kill_now(self) -> None:
        """Synchronous last resort (atexit, cancellation): SIGKILL and reap."""
        proc = self.process
        _live.discard(self)
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(proc.pid, 0)


async def start_process(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 20.0,
    ready_pattern: re.Pattern[str] | None = LISTENING_RE,
) -> ManagedProcess:
    """Start ``argv`` with its output in ``log_dir/<name>.log``; wait for its URL line.

    With ``ready_pattern=None`` it returns as soon as the process is spawned (the caller
    checks readiness, e.g. :func:`wait_for_port`).
    """
    proc = ManagedProcess(name, list(argv), log_dir / f"{name}.log", dict(env) if env else None)
    await restart_process(proc, ready_timeout_s=ready_timeout_s, ready_pattern=ready_pattern)
    return proc


async def restart_process(
    proc: ManagedProcess,
    *,
    ready_timeout_s: float = 20.0,
    ready_pattern: re.Pattern[str] | None = LISTENING_RE,
) -> None:
    """(Re)spawn a stopped ManagedProcess with its argv and wait until ready."""
    offset = proc.log_path.stat().st_size if proc.log_path.exists() else 0
    await proc.spawn()
    if ready_pattern is None:
        return
    try:
        proc.url = await proc.wait_line(ready_pattern, ready_timeout_s, offset)
    except BaseException:
        await proc.stop(timeout_s=2.0)
        raise


async def wait_for_port(
    host: str, port: int, timeout_s: float, proc: ManagedProcess | None = None
) -> None:
    """Poll a TCP connect until it succeeds; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            pass
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        if proc is not None:
            proc._check_alive()
        if time.monotonic() > deadline:
            name = proc.name if proc is not None else f"{host}:{port}"
            tail = f"; log {proc.log_path}:\n{_tail(proc.log_path)}" if proc else ""
            raise ProcessStartError(f"{name} not accepting connections within {timeout_s} s{tail}")
        await asyncio.sleep(0.02)
