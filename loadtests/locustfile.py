"""Locust entry point: ``locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 WsV1User``.

``--host`` is the server's URL (Locust has no default). Users, picked by class name at the end
of the command line (or ``LOCUST_USER_CLASSES``); none named: ``WsV1User`` alone
(:data:`DEFAULT_USER_CLASS`), not Locust's usual "every class", which would mix in users that
speak other servers' protocols. ``WsV1User`` (ws), ``TutorialUser``, ``SseUser``,
``BlockingUser``, ``PollingUser`` speak the reference server; ``OpenAIUser`` goes straight to an
OpenAI-compatible provider (the relay benchmark's baseline); ``ProfileUser`` speaks any server a
target profile describes (``--sh-target-profile``).

Our options all start with ``--sh-`` (see ``locust -f loadtests/locustfile.py --help``); they
are the rows of :data:`loadtests.options.OPTIONS`.
Exact metrics: each process keeps a :class:`~loadtests.metrics.LoadMetrics`; workers ship
their delta to the master on every Locust report (``report_to_master``/``worker_report``), so
the master's copy equals what one process would have computed from every sample. When the
run ends the master (or the only process) prints the summary table and, with
``--sh-metrics-out FILE``, writes the serialised metrics for ``streamharness load`` to gate on;
a worker given ``--sh-worker-metrics-out FILE`` writes there everything it shipped.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

# Locust runs this file by path; make our packages importable when run from a checkout.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import gevent  # noqa: E402
from locust import LoadTestShape, events  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.runners import MasterRunner, WorkerRunner  # noqa: E402

from loadtests.metrics import LoadMetrics  # noqa: E402
from loadtests.options import add_locust_arguments  # noqa: E402
from loadtests.progress import ProgressTally  # noqa: E402
from loadtests.report import summary_table  # noqa: E402
from loadtests.shapes import Shape, make_shape  # noqa: E402
from loadtests.users import (  # noqa: E402
    BlockingUser,
    OpenAIUser,
    PollingUser,
    ProfileUser,
    SseUser,
    TutorialUser,
    WsV1User,
    metrics_of,
)

__all__ = [
    "BlockingUser",
    "OpenAIUser",
    "PollingUser",
    "ProfileUser",
    "SseUser",
    "StreamShape",
    "TutorialUser",
    "WsV1User",
]

_REPORT_KEY = "streamharness_metrics"
_WARMUP_S = 1.0
_PROGRESS_EVERY_S = 1.0


def _listen(hook: Any, handler: Any) -> None:
    # Locust's EventHook.add_listener is untyped; one cast here keeps mypy strict elsewhere.
    hook.add_listener(handler)


DEFAULT_USER_CLASS = "WsV1User"
"""The users of ``locust -f loadtests/locustfile.py`` when no class is named: the reference
server's own WebSocket protocol. Locust's default, every class at once, would mix OpenAI
requests (which only a provider answers) into any target and fail a share of them."""


def _add_arguments(parser: Any) -> None:
    add_locust_arguments(parser)
    # Classes named on the command line, or in LOCUST_USER_CLASSES, still win.
    if not os.environ.get("LOCUST_USER_CLASSES", "").split():
        parser.set_defaults(user_classes=[DEFAULT_USER_CLASS])


_listen(events.init_command_line_parser, _add_arguments)


class StreamShape(LoadTestShape):
    """Drives ``--sh-shape`` with Locust's own ``--users``, ``--spawn-rate``, ``--run-time``."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._shape: Shape | None = None

    def _make(self) -> Shape | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        users = int(getattr(options, "num_users", None) or 1)
        rate = float(getattr(options, "spawn_rate", None) or users)
        duration = getattr(options, "run_time", None)
        if not duration:
            # No --run-time: hold the constant load until stopped, as Locust itself would.
            duration = 10**9 if options.sh_shape == "constant" else 60
        return make_shape(
            options.sh_shape, users=users, spawn_rate=rate, duration_s=float(duration)
        )

    def reset_time(self) -> None:
        # Called at every test start (the web UI can start several): read the options anew.
        super().reset_time()  # type: ignore[no-untyped-call]
        self._shape = None

    def tick(self) -> tuple[int, float] | None:
        if self._shape is None:
            self._shape = self._make()
            if self._shape is None:
                return None
        return self._shape.tick(self.get_run_time())  # type: ignore[no-untyped-call]


def _on_init(environment: Environment, **_: Any) -> None:
    metrics_of(environment)
    runner = environment.runner

    if isinstance(runner, WorkerRunner):
        # What this worker sent the master, for --sh-worker-metrics-out: on several machines
        # each one can keep (and check) its share of the master's figures. Read now: the
        # master's spawn message overwrites every --sh- option with the master's own values
        # (and workers forked by --processes share the master's --sh-metrics-out file).
        shipped = LoadMetrics()
        own_out = getattr(environment.parsed_options, "sh_worker_metrics_out", "")

        def _ship(client_id: str, data: dict[str, Any]) -> None:
            delta = metrics_of(environment).take()
            data[_REPORT_KEY] = delta.to_dict()
            shipped.merge(delta)

        def _write_shipped(**_: Any) -> None:
            if own_out:
                _write_atomically(Path(own_out), json.dumps(shipped.to_dict()))

        _listen(environment.events.report_to_master, _ship)
        _listen(environment.events.quit, _write_shipped)

    if isinstance(runner, MasterRunner):

        def _merge(client_id: str, data: dict[str, Any]) -> None:
            payload = data.get(_REPORT_KEY)
            if payload:
                metrics_of(environment).merge(LoadMetrics.from_dict(payload))

        _listen(environment.events.worker_report, _merge)

    if not isinstance(runner, MasterRunner):
        # Processes that run users account their own CPU during the test, so a report can
        # say when the load generator itself was the bottleneck.
        started: list[float] = []

        def _cpu_now() -> tuple[float, float]:
            r = resource.getrusage(resource.RUSAGE_SELF)
            return r.ru_utime + r.ru_stime, time.perf_counter()

        def _test_start(**_: Any) -> None:
            # Locust's import leaves ~50k long-lived objects; a full collection over them takes
            # ~30 ms, a pause every user of this process would record as token delay. Freezing
            # them moves them out of the collector's view for the rest of the run.
            gc.freeze()
            started[:] = _cpu_now()

        def _test_stop(**_: Any) -> None:
            if started:
                cpu, wall = _cpu_now()
                metrics = metrics_of(environment)
                metrics.generator_cpu_s += cpu - started[0]
                metrics.generator_wall_s += wall - started[1]
                started.clear()

        def _steady(**_: Any) -> None:
            # Benchmarks measure the steady state: the last users' handshakes (just after
            # spawning completes) and Locust's own stop sequence (it walks the stack with
            # `inspect` while users still read) delay tokens in a way no steady run does.
            window = (time.perf_counter() + _WARMUP_S, float("inf"))
            environment.streamharness_lag_window = window  # type: ignore[attr-defined]

        def _stopping(**_: Any) -> None:
            window = getattr(environment, "streamharness_lag_window", None)
            if window is not None:
                environment.streamharness_lag_window = (window[0], time.perf_counter())  # type: ignore[attr-defined]

        _listen(environment.events.test_stopping, _stopping)

        _listen(environment.events.spawning_complete, _steady)
        _listen(environment.events.test_start, _test_start)
        _listen(environment.events.test_stop, _test_stop)

    if not isinstance(runner, WorkerRunner):
        progress_out = getattr(environment.parsed_options, "sh_progress_out", "")
        if progress_out:
            # Run time counts from the test's start (each one, in the web UI), not from
            # Locust's launch; listened to here, before anything can start a test.
            test_starts: list[float] = []
            _listen(environment.events.test_start, lambda **_: test_starts.append(time.monotonic()))
            gevent.spawn(_write_progress, environment, Path(progress_out), test_starts)

        def _write(exit_code: int, **_: Any) -> None:
            # `quit` fires after the master's last wait for worker reports.
            _finish(environment)

        _listen(environment.events.quit, _write)


_listen(events.init, _on_init)


def _write_atomically(path: Path, text: str) -> None:
    # The reader never sees half a file: it is replaced whole.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_progress(environment: Environment, path: Path, started: list[float]) -> None:
    """Every second once a test ``started``, what the run has done so far (``streamharness
    load`` prints it); the greenlet ends with the process."""
    tally = ProgressTally()
    while True:
        gevent.sleep(_PROGRESS_EVERY_S)
        if not started:
            continue
        runner = environment.runner
        users = runner.user_count if runner is not None else 0
        elapsed = time.monotonic() - started[-1]
        snapshot = tally.snapshot(metrics_of(environment), users, elapsed)
        try:
            _write_atomically(path, json.dumps(snapshot.to_dict()))
        except OSError:
            return  # the folder went away: nobody is reading any more


def _finish(environment: Environment) -> None:
    options = environment.parsed_options
    metrics = metrics_of(environment)
    out = getattr(options, "sh_metrics_out", "") if options else ""
    if out:
        _write_atomically(Path(out), json.dumps(metrics.to_dict()))
    if not (options and getattr(options, "sh_quiet", False)):
        print(summary_table(metrics.summary()), flush=True)
