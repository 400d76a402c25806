"""Child processes that announce their URL: the one place that knows our readiness line.

Every server CLI of this project (mockllm, the reference server, the fault proxy, the benches'
baselines) prints ``<name> listening on http://HOST:PORT`` once it accepts connections, so a
parent can start it on port 0 and learn where it went. :data:`LISTENING_RE` reads that line;
:func:`start_child` starts a program and waits for it (synchronously, for benches and
tests); :func:`stop_process` stops any child; :func:`free_port` is for programs that cannot
bind port 0 themselves; :func:`die_with_parent`, called in a child, has the kernel stop it when
its parent dies.

The harness's own launcher (``scenarios.stack.procs``: asyncio, log files, ``PR_SET_PDEATHSIG``)
reuses :data:`LISTENING_RE` and :func:`free_port` from here; it lives in ``mockllm`` because
``mockllm`` imports nothing else of ours and its bench needs the same helpers.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

__all__ = ["LISTENING_RE", "Child", "die_with_parent", "free_port", "start_child", "stop_process"]

#: The line a server prints once listening; group 1 is its URL (``http://HOST:PORT``).
LISTENING_RE: Final = re.compile(r"listening on (http://\S+)")
_PR_SET_PDEATHSIG: Final = 1


def die_with_parent() -> None:
    """In a child: SIGTERM from the kernel when its parent dies, even by SIGKILL (Linux's
    ``PR_SET_PDEATHSIG``; nothing elsewhere). Safe between fork and exec (a ``preexec_fn``).

    The signal follows the parent *thread* that forked the child, and a parent that died
    before this call sends none: a caller that must not outlive it checks ``os.getppid()``.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for programs that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[Any], timeout_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it is still running after ``timeout_s``; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass(eq=False)
class Child:
    """A started child, the URL it announced, and every line of its stdout so far."""

    proc: subprocess.Popen[str]
    url: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def text(self) -> str:
        return "".join(self.output)

    def stop(self, timeout_s: float = 10.0) -> int:
        """:func:`stop_process`, then let the reader take in the last lines."""
        code = stop_process(self.proc, timeout_s)
        if self.reader is not None:
            self.reader.join(5)
        return code


def _no_line(argv: Sequence[str], timeout_s: float) -> Callable[[Child], BaseException]:
    def failure(child: Child) -> BaseException:
        return RuntimeError(
            f"{' '.join(argv)} printed no 'listening on' line within {timeout_s} s "
            f"(exit code {child.proc.returncode}): {child.text[-2000:]}"
        )

    return failure


def start_child(
    argv: Sequence[str],
    *,
    timeout_s: float = 20.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stderr: int | IO[Any] | None = None,
    failure: Callable[[Child], BaseException] | None = None,
) -> Child:
    """Start ``argv`` (stdout piped) and return once it printed its ``listening on`` line.

    ``env`` is added to this process's environment; ``stderr`` is inherited unless given
    (``subprocess.STDOUT`` puts it into :attr:`Child.output`). A child that exits or stays
    silent for ``timeout_s`` is killed and ``failure(child)`` raised (by default a
    ``RuntimeError`` with the end of its output), so each caller keeps its own message.
    """
    proc = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, **env} if env else None,
        cwd=cwd,
    )
    child = Child(proc)
    announced = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        # Drained to the end, even after the URL, so the child can never block on a full pipe;
        # the reader, not the caller, closes the pipe, so no close races a pending read.
        with proc.stdout:
            for line in proc.stdout:
                child.output.append(line)
                if not announced.is_set() and (match := LISTENING_RE.search(line)):
                    child.url = match.group(1)
                    announced.set()
        announced.set()  # end of output: no line will come

    child.reader = threading.Thread(target=pump, name=f"stdout of {argv[0]}", daemon=True)
    child.reader.start()
    if not announced.wait(timeout_s) or not child.url:
        proc.kill()
        proc.wait()
        child.reader.join(5)
        raise (failure or _no_line(argv, timeout_s))(child)
    return child
