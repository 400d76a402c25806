"""``--workers N``: N processes serve one port, supervised by the process that started them.

The parent binds everything before it forks, so port 0 works and the port is known (and
announced) before any worker runs: the public port as N ``SO_REUSEPORT`` listeners, one per
worker (the kernel spreads connections over them evenly; without ``SO_REUSEPORT`` one
listener is shared), and a private loopback port per worker for the admin API's fan-out
(``cluster.py``). The shared counters (``shared.py``) are made before the fork too.

The parent then only waits. A worker that dies ends the whole mock (exit status 1, saying
which worker and how): its part of the ledger is gone, so a restarted worker would serve a
mock whose ledger silently lacks requests. SIGTERM or SIGINT stops every worker the way one
process stops (open streams end with an error event), then the parent exits 0; a worker
whose parent dies gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``), so none outlives it.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Final

from mockllm.app import MockApp, MockConfig
from mockllm.childproc import die_with_parent
from mockllm.cluster import Cluster
from mockllm.listen import bind_socket
from mockllm.server import DRAIN_TIMEOUT_S, make_uvicorn_server
from mockllm.shared import SharedCounters
from mockllm.uvserver import PromptServer

__all__ = ["listeners", "run_workers"]

_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# How long a stopping worker may take beyond its drain before it is killed.
_STOP_GRACE_S: Final = DRAIN_TIMEOUT_S + 5.0


def _wake_only(signum: int, frame: FrameType | None) -> None:
    """The parent's SIGTERM/SIGINT: the wake-up fd (``signal.set_wakeup_fd``) ends its wait."""


def listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """The public port's listeners, one per worker (the same one ``count`` times without
    ``SO_REUSEPORT``); raises OSError when the port is taken."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return [bind_socket(host, port)] * count
    if port != 0:
        # Sockets that all set SO_REUSEPORT share a port: without this check a second mock
        # started on the same port would silently take half of the first one's traffic.
        bind_socket(host, port).close()
    first = bind_socket(host, port, reuse_port=True)
    out = [first]
    try:
        for _ in range(count - 1):
            out.append(bind_socket(host, first.getsockname()[1], reuse_port=True))
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out


def run_workers(
    config: MockConfig,
    public: Sequence[socket.socket],
    *,
    loop: str = "auto",
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Run ``len(public)`` workers on the bound ``public`` listeners until SIGTERM/SIGINT
    (status 0) or until a worker dies (status 1). ``on_ready`` (the address line) is called
    once a stop signal is handled: from then on SIGTERM is a clean stop."""
    count = len(public)
    private = [bind_socket("127.0.0.1", 0) for _ in range(count)]
    ports = tuple(sock.getsockname()[1] for sock in private)
    counters = SharedCounters.create()
    context = multiprocessing.get_context("fork")
    parent = os.getpid()
    workers: list[multiprocessing.process.BaseProcess] = []
    # A stop signal writes a byte here, which ends the wait below (no exception unwinds).
    wake, waker = socket.socketpair()
    wake.setblocking(False)
    waker.setblocking(False)
    previous_fd = signal.set_wakeup_fd(waker.fileno())
    previous = {sig: signal.signal(sig, _wake_only) for sig in _STOP_SIGNALS}
    if on_ready is not None:
        on_ready()
    code = 0
    try:
        # A worker inherits the handler above until it installs its own: a stop signal in
        # between would be lost and the worker would serve on. Held until then instead (a
        # fork inherits the mask; the worker releases it), and delivered here afterwards.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for index in range(count):
                worker = context.Process(
                    target=_worker,
                    args=(index, config, public[index], private, ports, counters, loop, parent),
                    name=f"mockllm worker {index}",
                )
                worker.start()
                workers.append(worker)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        sentinels = {worker.sentinel: worker for worker in workers}
        ready = multiprocessing.connection.wait([wake, *sentinels])
        if wake not in ready:
            dead = sentinels[ready[0]]  # type: ignore[index]
            # Its pipe closes a moment before it can be reaped: wait for the exit status.
            dead.join(5)
            print(
                f"mockllm: worker {workers.index(dead)} (pid {dead.pid}) exited with "
                f"{_how(dead.exitcode)}; stopping the others: a mock with several workers "
                "stops when one of them dies (its part of the ledger is gone). See the output "
                "above, then start it again.",
                file=sys.stderr,
                flush=True,
            )
            code = 1
    finally:
        # Ignore further signals while stopping: a second Ctrl-C must not orphan a worker.
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _stop_all(workers)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        for sock in {*public, *private, wake, waker}:
            sock.close()
    return code


def _how(exitcode: int | None) -> str:
    if exitcode is None:
        return "an unknown status"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"status {exitcode}"


def _stop_all(workers: list[multiprocessing.process.BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive() and worker.pid is not None:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(_STOP_GRACE_S)
        if worker.is_alive():
            worker.kill()
            worker.join()


def _die_with(parent: int) -> None:
    """SIGTERM when the parent dies, even by SIGKILL (Linux); exit if it already has."""
    die_with_parent()
    if os.getppid() != parent:
        os._exit(1)


def _worker(
    index: int,
    config: MockConfig,
    public: socket.socket,
    private: list[socket.socket],
    ports: tuple[int, ...],
    counters: SharedCounters,
    loop: str,
    parent: int,
) -> None:
    server_box: list[PromptServer] = []

    stopped: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        # Before uvicorn takes the signals over (and after it hands them back): stop too.
        stopped.append(signum)
        for server in server_box:
            server.request_exit()

    for sig in _STOP_SIGNALS:
        signal.signal(sig, stop)
    signal.set_wakeup_fd(-1)  # the parent's, inherited through the fork
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # held since the fork
    _die_with(parent)
    for number, sock in enumerate(private):
        if number != index:
            sock.close()
    for handler in logging.getLogger("mockllm").handlers:
        handler.setFormatter(logging.Formatter(f"mockllm worker {index}: %(message)s"))
    app = MockApp(config, cluster=Cluster(index, ports, counters))
    server = make_uvicorn_server(app, loop=loop)
    server_box.append(server)
    # As in one process (cli.py): what exists now lives as long as the worker.
    gc.collect()
    gc.freeze()
    if not stopped:
        server.run(sockets=[public, private[index]])
