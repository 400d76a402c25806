"""The zygote: our servers forked with their modules imported, as a spawned one would run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from scenarios.stack import zygote
from scenarios.stack.procs import ProcessStartError, free_port, start_process
from scenarios.stack.zygote import (
    ForkedChild,
    forkable,
    interpreter_settings_differ,
    zygote_pid,
)

pytestmark = pytest.mark.integration

MOCK = [sys.executable, "-m", "mockllm", "--host", "127.0.0.1", "--port", "0"]


def test_only_our_servers_on_our_interpreter_and_path_are_forked() -> None:
    assert forkable(MOCK) == "mockllm"
    assert forkable([sys.executable, "-m", "reference_server.naive"]) == "reference_server.naive"
    assert forkable(["/usr/bin/python3", *MOCK[1:]]) is None
    assert forkable([sys.executable, "-m", "locust"]) is None
    assert forkable([sys.executable, "-c", "pass"]) is None
    assert forkable(["nginx", "-c", "x"]) is None
    started = dict(os.environ)
    assert not interpreter_settings_differ(dict(os.environ), started)
    assert not interpreter_settings_differ({**os.environ, "STREAMHARNESS_X": "1"}, started)
    # A mutant runs from a folder of its own, first on PYTHONPATH: it must be imported afresh.
    assert interpreter_settings_differ({**os.environ, "PYTHONPATH": "/tmp/mutant"}, started)
    assert interpreter_settings_differ({**os.environ, "PYTHONHASHSEED": "7"}, started)


SERVER = [sys.executable, "-m", "reference_server", "--host", "127.0.0.1", "--port", "0"]
SERVER += ["--upstream", "http://127.0.0.1:9/v1"]


async def test_a_forked_server_gets_its_arguments_log_and_session(tmp_path: Path) -> None:
    port = free_port()
    argv = [*SERVER]
    argv[argv.index("--port") + 1] = str(port)
    server = await start_process("server", argv, log_dir=tmp_path)
    try:
        assert isinstance(server.process, ForkedChild)
        child = psutil.Process(server.pid)
        assert child.ppid() == zygote_pid()
        assert os.getsid(child.pid) == child.pid  # a session of its own, as when spawned
        assert child.cwd() == os.getcwd()
        assert server.url == f"http://127.0.0.1:{port}"
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection(*server.url[7:].split(":"))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            body = (await reader.read()).decode()
            writer.close()
        assert " 200 " in body.splitlines()[0], body
    finally:
        code = await server.stop(10)
    assert code == 0  # a stop signal is a clean exit, as for a spawned server
    log = server.log_path.read_text()
    assert "--- start 1:" in log and "reference_server listening on http://127.0.0.1:" in log


async def test_a_forked_server_that_fails_says_why_and_exits_with_its_status(
    tmp_path: Path,
) -> None:
    # The environment it was given, not the zygote's, is what the server reads.
    env = {**os.environ, "STREAMHARNESS_SERVER_DEFAULT_MAX_TOKENS": "-1"}
    with pytest.raises(ProcessStartError) as failed:
        await start_process("server", SERVER, log_dir=tmp_path, env=env, ready_timeout_s=20)
    assert "exited with code 2" in str(failed.value)
    assert "STREAMHARNESS_SERVER_DEFAULT_MAX_TOKENS: Input should be greater than 0" in str(
        failed.value
    )


async def test_the_same_server_spawned_for_another_path_is_not_forked(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    mock = await start_process("mockllm", MOCK, log_dir=tmp_path, env=env)
    try:
        assert not isinstance(mock.process, ForkedChild)
        assert psutil.Process(mock.pid).ppid() == os.getpid()
    finally:
        assert await mock.stop(10) == 0


async def test_a_signal_death_is_reported_as_a_spawned_ones(tmp_path: Path) -> None:
    mock = await start_process("mockllm", MOCK, log_dir=tmp_path)
    assert isinstance(mock.process, ForkedChild)
    os.kill(mock.pid or 0, signal.SIGKILL)
    async with asyncio.timeout(10):
        assert await mock.process.wait() == -signal.SIGKILL
    assert not mock.running


async def test_a_relative_log_directory_is_the_harness_s_not_the_zygote_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await start_process("mockllm", MOCK, log_dir=tmp_path / "first")  # the zygote runs
    await first.stop(10)
    monkeypatch.chdir(tmp_path)
    mock = await start_process("mockllm", MOCK, log_dir=Path("relative"))
    try:
        assert isinstance(mock.process, ForkedChild)
        log = (tmp_path / "relative" / "mockllm.log").read_text()
        assert "mockllm listening on" in log
    finally:
        await mock.stop(10)


async def test_a_module_the_zygote_imported_runs_as_python_m_would(tmp_path: Path) -> None:
    naive = [sys.executable, "-m", "reference_server.naive", "--port", "0"]
    server = await start_process("naive", naive, log_dir=tmp_path)
    try:
        assert isinstance(server.process, ForkedChild)
    finally:
        await server.stop(10)
    # runpy warns when the module it runs as __main__ is imported already.
    assert "RuntimeWarning" not in server.log_path.read_text()


async def test_interpreter_settings_the_zygote_started_without_mean_a_spawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await start_process("mockllm", MOCK, log_dir=tmp_path)  # the zygote runs
    await first.stop(10)
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    mock = await start_process("mockllm", MOCK, log_dir=tmp_path)
    try:
        assert not isinstance(mock.process, ForkedChild)
    finally:
        await mock.stop(10)


async def test_a_child_left_by_a_dead_zygote_counts_as_exited_once_it_is_gone() -> None:
    stand_in = await asyncio.create_subprocess_exec("sleep", "60")
    try:
        child = ForkedChild(asyncio.get_running_loop())
        child.pid = stand_in.pid
        zygote._report_when_gone(child)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(child.wait(), 0.3)  # still running: not exited yet
        stand_in.kill()
        async with asyncio.timeout(10):
            assert await child.wait() == -signal.SIGTERM
    finally:
        if stand_in.returncode is None:
            stand_in.kill()
        await stand_in.wait()


async def test_a_killed_zygote_takes_its_children_along_and_later_servers_are_spawned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zygote, "_zygote", None)  # a zygote of this test's own
    mock = await start_process("mockllm", MOCK, log_dir=tmp_path / "forked")
    try:
        assert isinstance(mock.process, ForkedChild)
        os.kill(zygote.zygote_pid() or 0, signal.SIGKILL)
        async with asyncio.timeout(15):
            await mock.process.wait()  # its parent-death signal stopped it
        assert not mock.running
        again = await start_process("mockllm", MOCK, log_dir=tmp_path / "spawned")
        try:
            assert not isinstance(again.process, ForkedChild)
        finally:
            assert await again.stop(10) == 0
    finally:
        await mock.stop(10)
