"""Several server workers behind nginx, round-robin, on the in-memory store or a private Redis.

The stack's promise the worker scenarios rest on: each new connection through nginx goes to
the next worker, so a client that reconnects lands on the other one.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from scenarios.clients.aio import V1Connection
from scenarios.stack import RedisUnavailable, Stack, StackError, StackSpec
from scenarios.stack.nginx import NginxConfig, render_config
from scenarios.stack.redis import find_redis
from tests.support import wait_for_async

PROMPT = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def redis_binary() -> str:
    try:
        return find_redis()
    except RedisUnavailable as exc:
        pytest.skip(f"redis-server not available: {exc}")


def test_nginx_config_balances_several_servers_round_robin() -> None:
    cfg = NginxConfig(listen_port=1, upstream_port=9001, extra_upstream_ports=(9002, 9003))
    text = render_config(cfg, Path("/p"))
    block = text[text.index("upstream servers {") : text.index("}", text.index("upstream"))]
    assert [line.strip() for line in block.splitlines()[1:] if line.strip()] == [
        "server 127.0.0.1:9001;",
        "server 127.0.0.1:9002;",
        "server 127.0.0.1:9003;",
    ]
    # round-robin is nginx's default: no other balancing method may creep in
    assert not any(m in block for m in ("least_conn", "ip_hash", "hash ", "random"))
    assert "proxy_pass http://servers;" in text
    single = render_config(NginxConfig(listen_port=1, upstream_port=9001), Path("/p"))
    assert "upstream " not in single and "proxy_pass http://127.0.0.1:9001;" in single


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"server_workers": 2}, "needs nginx=True"),
        ({"server_workers": 0}, "server_workers must be >= 1"),
        ({"server_workers": 2, "nginx": True, "downstream_proxy": True}, "upstream proxy"),
        ({"store": "redis", "target": "naive"}, "reference server"),
        ({"store": "postgres"}, "'memory' or 'redis'"),
    ],
)
def test_bad_worker_specs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StackSpec(**fields)  # type: ignore[arg-type]


async def _pid_via(url: str) -> int:
    # A fresh client each time: a new connection to nginx, as a reconnecting client makes.
    async with httpx.AsyncClient(timeout=5.0) as http:
        return int((await http.get(f"{url}/stats")).json()["pid"])


async def _connections(stack: Stack) -> list[float]:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return [(await http.get(f"{u}/stats")).json()["connections"] for u in stack.server_urls]


def _idle(counts: list[float]) -> bool:
    return not any(counts)


@pytest.mark.integration
@pytest.mark.nginx
async def test_two_workers_on_redis_alternate_and_all_stop(
    tmp_path: Path, nginx_binary: str, redis_binary: str
) -> None:
    spec = StackSpec(
        nginx=True, server_workers=2, store="redis", nginx_binary=nginx_binary,
        redis_binary=redis_binary,
    )  # fmt: skip
    async with Stack(spec, log_dir=tmp_path) as stack:
        pids = [p.pid for p in stack.processes if p.pid is not None]
        assert len(pids) == 5  # nginx, two workers, redis, mock
        assert stack.redis is not None and len(stack.server_urls) == 2
        workers = [p.pid for p in stack.servers]
        assert stack.server_url == stack.server_urls[0] and stack.server is stack.servers[0]
        for url in stack.server_urls:
            async with httpx.AsyncClient(timeout=5.0) as http:
                stats = (await http.get(f"{url}/stats")).json()
            assert stats["store"] == "redis"
        seen = [await _pid_via(stack.client_http_url) for _ in range(4)]
        assert set(seen) == set(workers)
        assert seen[0] != seen[1] and seen[0::2] == [seen[0]] * 2 and seen[1::2] == [seen[1]] * 2
        # A WebSocket that reconnects lands on the other worker (counted by each worker).
        first = await V1Connection.open(stack.client_ws_url, "rr")
        where = await _connections(stack)
        assert sorted(where) == [0, 1]
        await first.drop()
        await wait_for_async(lambda: _connections(stack), 10, what="drop seen", until=_idle)
        second = await V1Connection.open(stack.client_ws_url, "rr")
        assert await _connections(stack) == where[::-1]
        record = await second.stream(PROMPT, model="mock-fast", timeout_s=15)
        await second.close()
        assert record.outcome == "completed" and record.text
        assert set(stack.logs) >= {"reference-1", "reference-2", "redis", "nginx", "mockllm"}
    assert not any(psutil.pid_exists(pid) for pid in pids)


@pytest.mark.integration
@pytest.mark.nginx
async def test_two_workers_on_the_memory_store_need_no_redis(
    tmp_path: Path, nginx_binary: str
) -> None:
    spec = StackSpec(nginx=True, server_workers=2, nginx_binary=nginx_binary)
    async with Stack(spec, log_dir=tmp_path) as stack:
        assert stack.redis is None
        seen = {await _pid_via(stack.client_http_url) for _ in range(2)}
        assert seen == {p.pid for p in stack.servers}
        async with httpx.AsyncClient(timeout=5.0) as http:
            stats = (await http.get(f"{stack.server_url}/stats")).json()
        assert stats["store"] == "memory"


async def test_missing_redis_fails_before_anything_starts(tmp_path: Path) -> None:
    spec = StackSpec(store="redis", redis_binary="/nonexistent/redis-server")
    stack = Stack(spec, log_dir=tmp_path)
    with pytest.raises(RedisUnavailable, match="redis-server is not installed"):
        await stack.start()
    assert stack.processes == []


@pytest.mark.integration
@pytest.mark.nginx
async def test_kill_a_worker_and_restart_redis(
    tmp_path: Path, nginx_binary: str, redis_binary: str
) -> None:
    spec = StackSpec(
        nginx=True, server_workers=2, store="redis", nginx_binary=nginx_binary,
        redis_binary=redis_binary,
    )  # fmt: skip
    async with Stack(spec, log_dir=tmp_path) as stack:
        assert stack.redis is not None
        redis_port, redis_pid = stack.redis.port, stack.redis.process.pid
        await stack.restart_redis()
        assert stack.redis.port == redis_port and stack.redis.process.pid != redis_pid
        first, second = stack.servers
        await stack.kill_worker(2)
        assert second.exit_codes == [-9] and first.running
        # nginx takes the dead worker out of its turn: every request reaches the live one
        seen = {await _pid_via(stack.client_http_url) for _ in range(4)}
        assert seen == {first.pid}
        with pytest.raises(StackError, match="no worker 3"):
            await stack.kill_worker(3)
    async with Stack(StackSpec(), log_dir=tmp_path / "memory") as stack:
        with pytest.raises(StackError, match="keeps streams in memory"):
            await stack.restart_redis()
