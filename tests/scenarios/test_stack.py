"""The stack launcher: real processes up, traffic through the whole chain, nothing left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from scenarios.clients.aio import (
    TutorialConnection,
    V1Connection,
    create_stream,
    stream_sse,
    stream_tutorial,
)
from scenarios.stack import Stack, StackSpec
from scenarios.stack.nginx import NginxUnavailable
from scenarios.stack.procs import ProcessStartError, free_port, start_process

pytestmark = pytest.mark.integration

PROMPT = [{"role": "user", "content": "hello there"}]


def _gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(pid) for pid in pids)


def _empty(directory: Path) -> bool:
    return not any(directory.iterdir())


def _pids(stack: Stack) -> list[int]:
    return [p.pid for p in stack.processes if p.pid is not None]


@pytest.mark.nginx
async def test_full_chain_up_and_down(tmp_path: Path, nginx_binary: str) -> None:
    spec = StackSpec(
        nginx=True, upstream_proxy=True, downstream_proxy=True, nginx_binary=nginx_binary
    )
    async with Stack(spec, log_dir=tmp_path) as stack:
        pids = _pids(stack)
        assert len(pids) == 4  # nginx, server, fault proxy, mock
        assert stack.nginx is not None and stack.client_http_url == stack.nginx.url
        assert stack.client_ws_url == "ws" + stack.client_http_url.removeprefix("http")
        assert (stack.upstream_proxy_name, stack.downstream_proxy_name) == (
            "upstream",
            "downstream",
        )
        assert stack.mock_url not in stack.upstream_url  # the server calls the proxy
        async with httpx.AsyncClient() as http:
            proxies = (await http.get(f"{stack.proxy_api_url}/proxies")).json()
        assert set(proxies) == {"upstream", "downstream"}
        async with await V1Connection.open(stack.client_ws_url, "chain") as conn:
            ws = await conn.stream(PROMPT, model="mock-fast", timeout_s=15)
        sse = await stream_sse(stack.client_http_url, PROMPT, model="mock-fast", timeout_s=15)
        assert ws.outcome == sse.outcome == "completed"
        assert ws.text == sse.text and ws.text
        assert set(stack.logs) == {"mockllm", "faultproxy", "reference", "nginx", "nginx-error"}
    assert _gone(pids)
    assert "listening on" in (tmp_path / "mockllm.log").read_text()


async def test_upstream_proxy_is_in_the_path(tmp_path: Path) -> None:
    spec = StackSpec(
        upstream_proxy=True, server_env={"STREAMHARNESS_SERVER_UPSTREAM_MAX_RETRIES": "0"}
    )
    async with Stack(spec, log_dir=tmp_path) as stack:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{stack.proxy_api_url}/proxies/{stack.upstream_proxy_name}",
                json={"enabled": False},
            )
            assert r.status_code == 200
        async with await V1Connection.open(stack.client_ws_url, "cut") as conn:
            rec = await conn.stream(PROMPT, model="mock-fast", timeout_s=15)
    assert rec.outcome == "error" and rec.error_code is not None
    assert rec.error_code.startswith("upstream")


async def test_teardown_on_exception_and_on_cancel(tmp_path: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with Stack(StackSpec(target="naive"), log_dir=tmp_path / "a") as stack:
            pids = _pids(stack)
            raise RuntimeError("boom")
    assert len(pids) == 2 and _gone(pids)

    entered = asyncio.Event()
    holder: list[Stack] = []

    async def run_forever() -> None:
        async with Stack(StackSpec(), log_dir=tmp_path / "b") as stack:
            holder.append(stack)
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(run_forever())
    async with asyncio.timeout(30):
        await entered.wait()
    pids = _pids(holder[0])
    task.cancel()  # what asyncio.run does on Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(pids) == 2 and _gone(pids)


async def test_restart_server_same_port_clients_reconnect(tmp_path: Path) -> None:
    async with Stack(StackSpec(), log_dir=tmp_path) as stack:
        url, pid = stack.server_url, stack.server.pid if stack.server else None
        conn = await V1Connection.open(stack.client_ws_url, "r")
        await stack.restart_server()
        assert await conn.wait_closed(10)
        assert conn.close_code == 1001  # graceful shutdown of the reference server
        await conn.close()
        assert stack.server_url == url and stack.server is not None and stack.server.pid != pid
        assert stack.server.exit_codes == [0]
        async with await V1Connection.open(stack.client_ws_url, "r") as again:
            rec = await again.stream(PROMPT, model="mock-fast", timeout_s=15)
        assert rec.outcome == "completed"
        assert (tmp_path / "reference.log").read_text().count("--- start") == 2


async def test_naive_target_and_external_url_target(tmp_path: Path) -> None:
    async with Stack(StackSpec(target="naive"), log_dir=tmp_path / "n") as naive:
        rec = await stream_tutorial(naive.client_ws_url, PROMPT, model="mock-fast", timeout_s=15)
        assert (rec.outcome, rec.finish_reason) == ("completed", "end_marker")
        # an external target is not started; a downstream proxy can still sit in front of it
        spec = StackSpec(target=naive.client_ws_url, downstream_proxy=True)
        async with Stack(spec, log_dir=tmp_path / "e") as outer:
            assert outer.server is None and outer.server_url == naive.server_url
            assert outer.client_http_url != naive.server_url
            again = await stream_tutorial(
                outer.client_ws_url, PROMPT, model="mock-fast", timeout_s=15
            )
            assert again.text == rec.text
            with pytest.raises(Exception, match="external"):
                await outer.restart_server()


async def test_missing_nginx_fails_fast_with_a_reason(tmp_path: Path) -> None:
    spec = StackSpec(nginx=True, nginx_binary="/nonexistent/nginx")
    with pytest.raises(NginxUnavailable, match="not found") as info:
        async with Stack(spec, log_dir=tmp_path):
            pass
    assert "/nonexistent/nginx" in info.value.reason
    assert _empty(tmp_path)  # nothing was started


def test_bad_spec_values() -> None:
    with pytest.raises(ValueError, match="target must be"):
        StackSpec(target="ftp://example")
    with pytest.raises(ValueError, match="nginx_read_timeout_s"):
        StackSpec(nginx_read_timeout_s=0)
    with pytest.raises(ValueError, match="provider must be one of openai, anthropic, ollama"):
        StackSpec(provider="gemini")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive server speaks OpenAI chat only"):
        StackSpec(target="naive", provider="anthropic")


async def test_the_server_speaks_the_provider_at_its_base_path(tmp_path: Path) -> None:
    spec = StackSpec(provider="ollama", upstream_proxy=True)
    async with Stack(spec, log_dir=tmp_path) as stack:
        assert stack.upstream_url.endswith("/api") and stack.mock_url not in stack.upstream_url
        assert stack.server is not None
        argv = stack.server.argv
        assert argv[argv.index("--provider") + 1] == "ollama"
        assert argv[argv.index("--upstream") + 1] == stack.upstream_url


async def test_child_that_dies_reports_its_log(tmp_path: Path) -> None:
    code = "print('config is broken', flush=True); raise SystemExit(3)"
    with pytest.raises(ProcessStartError, match=r"exited with code 3[\s\S]*config is broken"):
        await start_process("broken", [sys.executable, "-c", code], log_dir=tmp_path)
    silent = "import time; time.sleep(60)"
    with pytest.raises(ProcessStartError, match=r"no 'listening on' line within 0\.5 s"):
        await start_process(
            "silent", [sys.executable, "-c", silent], log_dir=tmp_path, ready_timeout_s=0.5
        )


@pytest.mark.nginx
@pytest.mark.slow
async def test_nginx_idle_timeout_cuts_naive_but_not_reference_heartbeat(
    tmp_path: Path, nginx_binary: str
) -> None:
    naive_spec = StackSpec(target="naive", nginx=True, nginx_read_timeout_s=1.0)
    ref_spec = StackSpec(
        nginx=True,
        nginx_read_timeout_s=1.0,
        server_env={"STREAMHARNESS_SERVER_HEARTBEAT_INTERVAL_S": "0.3"},
    )
    async with (
        Stack(naive_spec, log_dir=tmp_path / "naive") as naive,
        Stack(ref_spec, log_dir=tmp_path / "ref") as ref,
    ):
        quiet = await TutorialConnection.open(naive.client_ws_url, "idle")
        kept = await V1Connection.open(ref.client_ws_url, "idle")
        t0 = time.monotonic()
        assert await quiet.wait_closed(6)
        assert quiet.close_code == 1006 and 0.7 < time.monotonic() - t0 < 4.0
        # The reference server's pings keep its connection open well past the timeout.
        assert not await kept.wait_closed(max(0.1, t0 + 2.5 - time.monotonic()))
        assert kept.pings >= 1
        rec = await kept.stream(PROMPT, model="mock-fast", timeout_s=15)
        assert rec.outcome == "completed"
        await kept.close()
        await quiet.close()


@pytest.mark.nginx
async def test_sse_through_nginx_is_not_buffered_and_resumes(
    tmp_path: Path, nginx_binary: str
) -> None:
    async with Stack(StackSpec(nginx=True), log_dir=tmp_path) as stack:
        # 120 tokens 12.3 ms apart: a busy machine that delays this client for a second still
        # finds the answer unfinished when the client leaves after its first 5 tokens.
        long_prompt = [{"role": "user", "content": "[[mock tokens=120]] hello there"}]
        created = await create_stream(stack.client_http_url, long_prompt, model="mock-realistic")
        rec = await stream_sse(stack.client_http_url, stream=created, stop_after_tokens=5)
        assert rec.outcome == "disconnected"
        # Tokens trickled in (mock-realistic: 12.3 ms apart), they were not held to the end.
        assert rec.tpot_s is not None and rec.tpot_s > 0.004
        await stream_sse(
            stack.client_http_url, stream=created, record=rec, last_event_id=rec.last_event_id
        )
        assert rec.outcome == "completed" and rec.reconnects == 1
        assert rec.missing_indexes == [] and rec.duplicate_indexes == []


_HOLD_STACK = """
import asyncio, json, sys
from scenarios.stack import Stack, StackSpec
from scenarios.stack.zygote import zygote_pid

async def main():
    async with Stack(StackSpec(target="naive"), log_dir=sys.argv[1]) as stack:
        # The servers are forked from the zygote: it must not outlive the harness either.
        print(json.dumps([p.pid for p in stack.processes] + [zygote_pid()]), flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
async def test_children_never_outlive_the_harness(tmp_path: Path, sig: int) -> None:
    # SIGINT: asyncio.run cancels the main task and the stack stops its children in order.
    # SIGKILL: no cleanup code runs at all; the kernel's parent-death signal stops them.
    children: list[psutil.Process] = []
    harness = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD_STACK, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert harness.stdout is not None
        async with asyncio.timeout(30):
            line = await harness.stdout.readline()
        *pids, zygote = json.loads(line)
        assert zygote is not None and all(psutil.Process(pid).ppid() == zygote for pid in pids)
        children += [psutil.Process(pid) for pid in [*pids, zygote]]
        harness.send_signal(sig)
        async with asyncio.timeout(20):
            await harness.wait()
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, timeout=15)
        assert alive == []
    finally:
        if harness.returncode is None:
            harness.kill()
            await harness.wait()
        for child in children:  # only reached with children alive when the test failed
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


async def test_the_provider_port_stays_put_with_or_without_an_upstream_proxy(
    tmp_path: Path,
) -> None:
    port = free_port()
    target = "http://127.0.0.1:9"  # an external target is not started: only the provider side
    async with Stack(StackSpec(target=target, provider_port=port), log_dir=tmp_path) as plain:
        assert plain.mock_url == f"http://127.0.0.1:{port}"
        assert plain.upstream_url == f"http://127.0.0.1:{port}/v1"
    spec = StackSpec(target=target, provider_port=port, upstream_proxy=True)
    async with Stack(spec, log_dir=tmp_path) as proxied:
        assert proxied.upstream_url == f"http://127.0.0.1:{port}/v1"
        assert proxied.mock_url != f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:  # through the proxy to the mock
            models = await http.get(f"{proxied.upstream_url}/models")
        assert models.status_code == 200


async def test_a_url_target_keeps_its_path_through_the_downstream_proxy(tmp_path: Path) -> None:
    spec = StackSpec(target="http://127.0.0.1:9/app", downstream_proxy=True)
    async with Stack(spec, log_dir=tmp_path) as stack:
        assert stack.server_url == "http://127.0.0.1:9/app"
        assert stack.client_http_url.endswith("/app")
        assert stack.client_http_url != stack.server_url
        assert stack.client_ws_url == "ws" + stack.client_http_url.removeprefix("http")
