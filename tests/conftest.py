"""Repository-wide pytest options (engine-specific fixtures live in each test folder).

Also a guard: every process a test starts must be stopped by a fixture. Each session marks its
environment (inherited by every process the tests start, however deep); at the end any process
still carrying the mark is reported, killed, and fails the run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from scenarios.stack.zygote import zygote_pid

_MARK = "STREAMHARNESS_TEST_SESSION"
# How long a process left at the end may take to exit by itself before it is reported;
# tests/test_leftover_guard.py shortens it for the runs it nests (they leak on purpose).
_GRACE_S = float(os.environ.get("STREAMHARNESS_LEFTOVER_GRACE_S", "5"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--toxiproxy-url",
        default=None,
        help="run the fault proxy conformance tests against this Toxiproxy server "
        "(default: TOXIPROXY_URL, else the embedded server)",
    )


# pyproject.toml's addopts turn off langsmith's pytest plugin (seconds per process); the runs
# the tests nest (doc examples, the leftover guard) have a rootdir of their own, so they get
# the option through the environment they inherit.
_NO_LANGSMITH = "-p no:langsmith_plugin"
if _NO_LANGSMITH not in os.environ.get("PYTEST_ADDOPTS", ""):
    os.environ["PYTEST_ADDOPTS"] = f"{os.environ.get('PYTEST_ADDOPTS', '')} {_NO_LANGSMITH}".strip()


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # What the code under test puts in a temporary directory of its own (a failed scenario
    # run's logs, nginx's configuration) lands in pytest's base directory, which pytest
    # prunes to its last runs, instead of piling up in /tmp; the commands the tests run as
    # processes of their own (streamharness run, bench, load) find it in TMPDIR.
    base = str(tmp_path_factory.mktemp("tmp"))
    previous = os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = base
    try:
        yield
    finally:
        tempfile.tempdir = None
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        # An xdist worker checks what its own tests started: its mark, not the controller's.
        os.environ[_MARK] = str(os.getpid())
    else:
        # Not overwritten when set: a pytest run by a test (the plugin examples) belongs to ours.
        os.environ.setdefault(_MARK, str(os.getpid()))


def _leftovers(mark: str, spare_children: bool) -> list[psutil.Process]:
    me = os.getpid()
    # The zygote lives as long as the process that started it (its children do not).
    zygote = zygote_pid()
    found = []
    for proc in psutil.process_iter():
        if proc.pid in (me, zygote):
            continue
        if spare_children and proc.ppid() == me:
            continue  # an xdist controller's children are its workers, which check their own
        try:
            if proc.environ().get(_MARK) == mark and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill_leftovers(mark: str, spare_children: bool) -> list[str]:
    """Kill what the tests left running; one line per process."""
    # Fixtures have stopped (and waited for) their processes; allow a slow exit nonetheless.
    _, alive = psutil.wait_procs(_leftovers(mark, spare_children), timeout=_GRACE_S)
    lines = []
    for proc in alive:
        try:
            lines.append(f"  {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)
    return lines


# What xdist workers reported (in the controller).
_reported_by_workers: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    _reported_by_workers.extend(getattr(node, "workeroutput", {}).get("leftovers", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mark = os.environ.get(_MARK)
    if mark != str(os.getpid()):
        return  # a nested run: the outer session checks
    controller = session.config.pluginmanager.hasplugin("dsession")
    lines = _kill_leftovers(mark, spare_children=controller) + _reported_by_workers
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # A worker's terminal output is not shown: the controller reports for it.
        workeroutput["leftovers"] = lines
        return
    if not lines:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "processes left running by the tests (now killed):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line("")  # after the progress line, which ensure_newline() misses
        reporter.write_line(message, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
