"""Our Python servers forked from a warm process, their modules already imported.

Most of a stack child's start was Python importing: about 0.45 s of CPU for the reference
server (FastAPI, pydantic), 0.2 s each for the mock and the fault proxy, on every stack a
scenario run starts. The zygote, one per harness process and started on first use, imports
them once; each child is then forked from it and runs its module as ``python -m`` would, with
the argv, environment, working directory, log file and session of a spawned one, and its own
process id the harness signals directly.

Only ``python -m <one of RUNNABLE>`` with the harness's own interpreter and ``PYTHON*``
environment (so no mutant on a ``PYTHONPATH`` of its own) is forked; anything else, and
everything when the zygote cannot start, is spawned as before (:mod:`scenarios.stack.procs`).

The zygote and the harness speak JSON lines over its stdin and stdout: a request
``{"id", "module", "args", "env", "cwd", "log"}`` gets ``{"id", "pid"}`` (or ``{"id",
"error"}``), and each child's exit is ``{"exit": pid, "code": c}`` (``-N``: signal N, as
``asyncio`` reports it). The zygote dies with the harness (``PR_SET_PDEATHSIG``, and when its
stdin closes), and its children with it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib
import itertools
import json
import logging
import os
import select
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

from mockllm.childproc import die_with_parent

__all__ = [
    "RUNNABLE",
    "ForkedChild",
    "fork_child",
    "forkable",
    "interpreter_settings_differ",
    "zygote_pid",
]

log = logging.getLogger(__name__)

#: ``python -m`` module -> what the zygote imports for it.
RUNNABLE: Final = {
    "mockllm": "mockllm.cli",
    "reference_server": "reference_server.cli",
    "reference_server.naive": "reference_server.naive",
    "scenarios.faultproxy": "scenarios.faultproxy.cli",
}


def forkable(argv: Sequence[str]) -> str | None:
    """The module ``argv`` runs, when it is one the zygote runs; else None."""
    if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m" or argv[2] not in RUNNABLE:
        return None
    return argv[2]


def interpreter_settings_differ(asked: Mapping[str, str], started: Mapping[str, str]) -> bool:
    """Whether an environment asks for other ``PYTHON*`` values (PYTHONPATH, PYTHONHASHSEED,
    ...) than the one the zygote's interpreter started with: what an interpreter reads as it
    starts, a forked child cannot change, so such a child is spawned."""
    names = {k for k in (*asked, *started) if k.startswith("PYTHON")}
    return any(asked.get(k) != started.get(k) for k in names)


class ForkedChild:
    """A forked child as :class:`scenarios.stack.procs.ManagedProcess` uses a process: the
    subset of ``asyncio.subprocess.Process`` it needs."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = 0
        self.returncode: int | None = None
        self._loop = loop
        self._exited: asyncio.Future[None] = loop.create_future()

    async def wait(self) -> int:
        await asyncio.shield(self._exited)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # never a pid that may have been reused
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exit(self, code: int) -> None:
        """Called from the zygote's reader thread."""

        def settle() -> None:
            self.returncode = code
            if not self._exited.done():
                self._exited.set_result(None)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(settle)


class _Zygote:
    """The harness's side: one zygote process and the thread that reads what it says."""

    def __init__(self) -> None:
        #: What the zygote's interpreter started with: a child must ask for the same.
        self.env = dict(os.environ)
        self.proc = _spawn_from_keeper_thread(
            # -c, not -m: run as __main__, this module would be a second copy of itself.
            [sys.executable, "-c", "from scenarios.stack.zygote import serve; serve()"],
            self.env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._requests: IO[bytes] = self.proc.stdin
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # the maps below, shared with the reader thread
        self._write_lock = threading.Lock()  # one request at a time on the pipe
        self._pending: dict[int, tuple[ForkedChild, concurrent.futures.Future[int]]] = {}
        self._children: dict[int, ForkedChild] = {}
        self.alive = True
        threading.Thread(
            target=self._read, args=(self.proc.stdout,), name="zygote", daemon=True
        ).start()

    def fork(
        self, module: str, args: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> tuple[ForkedChild, concurrent.futures.Future[int]]:
        child = ForkedChild(asyncio.get_running_loop())
        started: concurrent.futures.Future[int] = concurrent.futures.Future()
        request = {
            "module": module,
            "args": list(args),
            "env": dict(env),
            "cwd": os.getcwd(),
            "log": os.path.abspath(log_path),
            "zygote": self.proc.pid,
        }
        with self._lock:
            if not self.alive:
                raise OSError("the zygote has exited")
            number = next(self._ids)
            self._pending[number] = (child, started)
        # Not under the maps' lock: the reader thread must go on draining the replies while
        # a request waits for room in the pipe.
        with self._write_lock:
            self._requests.write(json.dumps({"id": number, **request}).encode() + b"\n")
            self._requests.flush()
        return child, started

    def _read(self, replies: IO[bytes]) -> None:
        for line in replies:
            message = json.loads(line)
            with self._lock:
                if "exit" in message:
                    exited = self._children.pop(message["exit"], None)
                    if exited is not None:
                        exited._exit(message["code"])
                    continue
                child, started = self._pending.pop(message["id"])
                if "pid" in message:
                    child.pid = message["pid"]
                    self._children[child.pid] = child
                    started.set_result(child.pid)
                else:
                    started.set_exception(OSError(message["error"]))
        # The zygote is gone. Its children got their parent-death SIGTERM and may still be
        # shutting down: each counts as exited once it is gone (with that signal as its
        # status: the real one went to whoever reaped it).
        with self._lock:
            self.alive = False
            for _, started in self._pending.values():
                started.set_exception(OSError("the zygote exited"))
            orphans = list(self._children.values())
            self._pending.clear()
            self._children.clear()
        for child in orphans:
            _report_when_gone(child)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._requests.close()  # its stdin at EOF: the zygote exits
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _report_when_gone(child: ForkedChild) -> None:
    try:
        pidfd = os.pidfd_open(child.pid)
    except OSError:  # gone already (ProcessLookupError), or no pidfd on this system
        child._exit(-signal.SIGTERM)
        return

    def wait() -> None:
        try:
            select.select([pidfd], [], [])  # readable once the process has exited
        finally:
            os.close(pidfd)
        child._exit(-signal.SIGTERM)

    threading.Thread(target=wait, name=f"orphan-{child.pid}", daemon=True).start()


def _spawn_from_keeper_thread(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start the zygote from a thread that lives as long as this process: Linux sends the
    parent-death signal when the *thread* that forked a child ends, so the zygote must not
    be started by an event loop's worker thread, say, that ends before the harness does."""
    started: list[subprocess.Popen[bytes] | OSError] = []
    done = threading.Event()

    def keep() -> None:
        try:
            started.append(
                subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                    preexec_fn=die_with_parent,
                )
            )
        except OSError as exc:
            started.append(exc)
        done.set()
        threading.Event().wait()  # until the process exits

    threading.Thread(target=keep, name="zygote-parent", daemon=True).start()
    done.wait()
    [proc] = started
    if isinstance(proc, OSError):
        raise proc
    return proc


_zygote: _Zygote | None = None
_zygote_failed = False
_start_lock = threading.Lock()


def _get_zygote() -> _Zygote | None:
    global _zygote, _zygote_failed
    with _start_lock:
        if _zygote is None and not _zygote_failed:
            try:
                _zygote = _Zygote()
            except OSError as exc:
                _zygote_failed = True
                log.warning("cannot start the zygote (%s); servers are spawned instead", exc)
        return _zygote if _zygote is not None and _zygote.alive else None


def zygote_pid() -> int | None:
    """The zygote's process id, if this process started one (the test suite's leftover
    check spares it: it lives as long as the harness process)."""
    return _zygote.proc.pid if _zygote is not None else None


@atexit.register
def _stop_zygote() -> None:
    if _zygote is not None:
        _zygote.close()


async def fork_child(
    module: str, args: Sequence[str], env: Mapping[str, str] | None, log_path: Path
) -> ForkedChild | None:
    """Fork ``python -m module *args`` from the zygote, its output appended to ``log_path``;
    None when there is no zygote to fork from (the caller spawns it)."""
    zygote = _get_zygote()
    if zygote is None:
        return None
    asked = os.environ if env is None else env
    if interpreter_settings_differ(asked, zygote.env):
        return None
    try:
        child, started = zygote.fork(module, args, asked, log_path)
        try:
            await asyncio.shield(asyncio.wrap_future(started))
        except asyncio.CancelledError:
            # Nobody will stop a child whose start was abandoned: it must not serve on.
            started.add_done_callback(_kill_once_started)
            raise
    except OSError as exc:
        log.warning("the zygote could not fork %s (%s); spawning it instead", module, exc)
        return None
    return child


def _kill_once_started(started: concurrent.futures.Future[int]) -> None:
    if not started.cancelled() and started.exception() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(started.result(), signal.SIGKILL)


# --- the zygote process ------------------------------------------------------------------


def _run_child(request: dict[str, Any], zygote_fds: Sequence[int]) -> int:
    """In the forked child: become what ``python -m module`` would be, run it, return its
    exit status."""
    import traceback

    try:
        _become_child(request, zygote_fds)
    except BaseException:
        traceback.print_exc()  # into the log when it is open, else the zygote's stderr
        return 1
    import runpy

    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _become_child(request: dict[str, Any], zygote_fds: Sequence[int]) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in zygote_fds:
        os.close(fd)
    os.setsid()
    die_with_parent()
    if os.getppid() != request["zygote"]:
        os._exit(1)  # the zygote died before the signal was set: nobody would stop this one
    os.chdir(request["cwd"])
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    os.close(null_fd)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["module"], *request["args"]]
    # The zygote imported some -m modules themselves (reference_server.naive): run as
    # __main__, they must be executed afresh, as python -m does (their imports stay warm).
    sys.modules.pop(request["module"], None)


def serve() -> None:
    """The zygote's main: import, then fork children on request until stdin closes."""
    for name in RUNNABLE.values():
        importlib.import_module(name)
    import gc

    # What the children inherit stays shared with the zygote (copy-on-write pages).
    gc.collect()
    gc.freeze()
    requests, replies = sys.stdin.fileno(), sys.stdout.buffer
    pending = b""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)

    def say(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message).encode() + b"\n")
        replies.flush()

    while True:
        for key, _ in selector.select():
            if key.fileobj is wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    say({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            data = os.read(requests, 1 << 16)
            if not data:
                return  # the harness is gone or done: the children get their SIGTERM
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as exc:
                    say({"id": request["id"], "error": str(exc)})
                    continue
                if pid == 0:
                    code = 1
                    try:
                        selector.close()
                        code = _run_child(request, zygote_fds=(wake_r, wake_w))
                    finally:
                        os._exit(code)
                say({"id": request["id"], "pid": pid})
