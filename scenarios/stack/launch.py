"""The stack launcher: mock provider, server under test, fault proxies and nginx on loopback.

::

    client -> [nginx] -> [fault proxy "downstream"] -> server -> [fault proxy "upstream"] -> mockllm
                                                     (x N) -> [redis-server]

(docs/architecture.md.) ``async with Stack(spec) as stack:`` starts what ``spec`` asks for, on
free ports, waits until each piece is ready, and on leaving (normally, on an exception, on
cancellation / Ctrl-C) stops everything in reverse order. Every child's output goes to one
log file per process in ``log_dir`` (``stack.logs``). The server under test is the reference
server, the naive server, or an external URL that is not started (``StackSpec.target``).

Several workers (``StackSpec.server_workers``): separate server processes, each started like
the single one on its own port, with nginx in front balancing them round-robin (one new
connection to each in turn). ``StackSpec.store = "redis"`` starts a private ``redis-server``
(:mod:`scenarios.stack.redis`) before the servers and passes ``--store redis://...`` to each;
it is stopped after them. ``StackSpec.provider`` is the API the reference server speaks to
the mock (``--provider``), and the path of ``stack.upstream_url`` (``…/v1``, ``…/api``).

Both fault proxies are proxies of one Toxiproxy-compatible server: the embedded one
(``python -m scenarios.faultproxy``, started here) or an external one given by
``StackSpec.toxiproxy_url``. Scenarios add toxics through ``stack.proxy_api_url`` and the
names ``stack.upstream_proxy_name`` / ``stack.downstream_proxy_name``. A third proxy,
``StackSpec.mock_proxy``, puts the fault proxy alone in front of the mock for clients (no
server in between): the relay benchmark's baseline for what one more process on the path costs.

This module reads no environment variable: a CLI that honours ``TOXIPROXY_URL`` passes it
in the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx

from reference_server.providers import BASE_PATHS, PROVIDER_NAMES, ProviderName
from scenarios.stack.nginx import Nginx, NginxError, NginxUnavailable
from scenarios.stack.procs import (
    ManagedProcess,
    ProcessStartError,
    StackError,
    free_port,
    restart_process,
    start_process,
    wait_for_port,
)
from scenarios.stack.redis import RedisServer, RedisUnavailable, find_redis
from scenarios.targets import BUILTIN_TARGETS

# The max_tokens the reference server asks of the mock when a client gives none and the
# provider API requires one: more than any scenario's answer.
MOCK_MAX_TOKENS = 1_000_000

__all__ = [
    "NginxError",
    "NginxUnavailable",
    "ProcessStartError",
    "RedisUnavailable",
    "Stack",
    "StackError",
    "StackSpec",
]

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class StackSpec:
    """What to start. Defaults: reference server straight on the mock, no proxy, no nginx.

    ``target``: ``"reference"``, ``"naive"`` or the URL of a server already running
    (http(s):// or ws(s)://, root of its paths). How to talk to it is the caller's business
    (a target profile, :mod:`scenarios.targets`): the stack only starts and connects things.
    """

    target: str = "reference"
    nginx: bool = False
    nginx_read_timeout_s: float = 60.0
    nginx_send_timeout_s: float = 60.0
    nginx_gzip_event_stream: bool = False
    # proxy_buffering on (a backend's "X-Accel-Buffering: no" still turns it off per response)
    nginx_buffering: bool = False
    nginx_binary: str | None = None
    upstream_proxy: bool = False
    downstream_proxy: bool = False
    # A proxy "mock" straight to the mock, for clients: ``stack.mock_proxy_url``.
    mock_proxy: bool = False
    mock_seed: int = 0
    mock_profile: str | None = None
    mock_args: tuple[str, ...] = ()
    # The port the server under test calls its provider on, the same across stacks (a server
    # the harness does not start is configured once): the upstream proxy listens there when
    # there is one, else the mock. None: a free port.
    provider_port: int | None = None
    proxy_seed: int = 0
    # An external Toxiproxy-compatible server to use instead of starting the embedded one.
    toxiproxy_url: str | None = None
    # Or a real ``toxiproxy-server`` binary to start (its toxics are not seeded).
    toxiproxy_binary: str | None = None
    # Prefix of the proxy names, so several stacks can share one external Toxiproxy.
    proxy_name_prefix: str = ""
    server_env: Mapping[str, str] = field(default_factory=dict)
    server_args: tuple[str, ...] = ()
    # Server processes behind nginx (round-robin); more than one needs nginx.
    server_workers: int = 1
    # Where the servers keep their streams: their own memory, or a private redis-server.
    store: Literal["memory", "redis"] = "memory"
    redis_binary: str | None = None
    # The API the reference server speaks to the mock (its --provider).
    provider: ProviderName = "openai"
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 8.0

    @property
    def external(self) -> bool:
        return self.target not in BUILTIN_TARGETS

    def __post_init__(self) -> None:
        if self.external and urlsplit(self.target).scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(
                f"target must be 'reference', 'naive' or an http(s)/ws(s) URL, got {self.target!r}"
            )
        if self.nginx_read_timeout_s <= 0:
            raise ValueError("nginx_read_timeout_s must be > 0")
        if self.provider not in PROVIDER_NAMES:
            raise ValueError(
                f"provider must be one of {', '.join(PROVIDER_NAMES)}, got {self.provider!r}"
            )
        if self.provider != "openai" and self.target != "reference":
            raise ValueError(
                f"provider {self.provider!r} is the reference server's: the naive server speaks "
                "OpenAI chat only, and a server the harness does not start picks its own"
            )
        if self.server_workers < 1:
            raise ValueError(f"server_workers must be >= 1, got {self.server_workers}")
        if self.store not in ("memory", "redis"):
            raise ValueError(f"store must be 'memory' or 'redis', got {self.store!r}")
        if (self.server_workers > 1 or self.store == "redis") and self.target != "reference":
            raise ValueError(
                "server_workers and store: redis start the reference server; "
                f"target is {self.target!r}"
            )
        if self.server_workers > 1 and not self.nginx:
            raise ValueError("server_workers > 1 needs nginx=True: nginx balances the workers")
        if self.server_workers > 1 and self.downstream_proxy:
            raise ValueError(
                "the downstream proxy stands in front of one server; with server_workers > 1 "
                "use the upstream proxy"
            )


async def _together(starts: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``starts`` side by side; the first failure cancels the rest (each start kills what
    it began when cancelled) and is raised as itself, not wrapped in an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as group:
            for start in starts:
                group.create_task(start)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _http(url: str) -> str:
    """ws(s)://... -> http(s)://..., without a trailing slash."""
    url = url.rstrip("/")
    return "http" + url.removeprefix("ws") if url.startswith("ws") else url


def _ws(url: str) -> str:
    return "ws" + url.removeprefix("http") if url.startswith("http") else url


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    return parts.hostname or LOOPBACK, port


class Stack:
    """A running stack; see the module docstring. Attributes are set once started.

    ``client_http_url`` / ``client_ws_url``: the front of the chain (nginx, else the
    downstream proxy, else the server), root URLs without a path. ``server_url``: the
    server itself (the first worker when there are several; ``server_urls`` has each, in
    nginx's order). ``mock_url``: the mock's root (no ``/v1``); ``upstream_url``: what the
    server calls (``.../v1``, ``.../api`` for Ollama; through the upstream proxy when there is
    one).
    """

    def __init__(
        self,
        spec: StackSpec,
        *,
        log_dir: Path | str | None = None,
        python: str = sys.executable,
    ) -> None:
        self.spec = spec
        self.log_dir = (
            Path(log_dir)
            if log_dir is not None
            else Path(tempfile.mkdtemp(prefix="streamharness-stack-"))
        )
        self.python = python
        self.mock: ManagedProcess | None = None
        self.server: ManagedProcess | None = None
        self.servers: list[ManagedProcess] = []
        self.server_urls: list[str] = []
        self.redis: RedisServer | None = None
        self.faultproxy: ManagedProcess | None = None
        self.nginx: Nginx | None = None
        self.mock_url = ""
        self.upstream_url = ""
        self.server_url = ""
        self.proxy_api_url: str | None = None
        self.upstream_proxy_name: str | None = None
        self.downstream_proxy_name: str | None = None
        self.downstream_proxy_url: str | None = None
        self.mock_proxy_url: str | None = None
        self.client_http_url = ""
        self.client_ws_url = ""
        self.started_at = 0.0
        self._proxies_created: list[str] = []

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def processes(self) -> list[ManagedProcess]:
        procs = [
            self.nginx.process if self.nginx else None,
            *self.servers,
            self.redis.process if self.redis else None,
            self.faultproxy,
            self.mock,
        ]
        return [p for p in procs if p is not None]

    @property
    def logs(self) -> dict[str, Path]:
        """Captured output per process (and nginx's error log)."""
        out = {p.name: p.log_path for p in reversed(self.processes)}
        if self.nginx is not None:
            out["nginx-error"] = self.nginx.error_log
        return out

    def describe(self) -> dict[str, Any]:
        """URLs and names, for reports and error messages."""
        return {
            "target": self.spec.target,
            "client_http_url": self.client_http_url,
            "client_ws_url": self.client_ws_url,
            "server_url": self.server_url,
            "server_urls": list(self.server_urls),
            "redis_url": self.redis.url if self.redis else None,
            "mock_url": self.mock_url,
            "upstream_url": self.upstream_url,
            "proxy_api_url": self.proxy_api_url,
            "upstream_proxy": self.upstream_proxy_name,
            "downstream_proxy": self.downstream_proxy_name,
            "mock_proxy_url": self.mock_proxy_url,
            "nginx": self.nginx.url if self.nginx else None,
            "logs": {k: str(v) for k, v in self.logs.items()},
        }

    async def start(self) -> None:
        spec = self.spec
        self.started_at = time.perf_counter()
        try:
            if spec.nginx:
                # Fail before starting anything when nginx cannot run here.
                from scenarios.stack.nginx import find_nginx

                find_nginx(spec.nginx_binary)
            if spec.store == "redis":
                find_redis(spec.redis_binary)
            # Independent processes start side by side: most of each start is Python importing.
            starts = [self._start_mock()]
            if spec.upstream_proxy or spec.downstream_proxy or spec.mock_proxy:
                starts.append(self._start_proxy_server())
            if spec.store == "redis":
                starts.append(self._start_redis())
            await _together(starts)
            if spec.mock_proxy:
                name = spec.proxy_name_prefix + "mock"
                self.mock_proxy_url = f"http://{await self._create_proxy(name, self.mock_url)}"
            base_path = BASE_PATHS[spec.provider]
            self.upstream_url = self.mock_url + base_path
            if spec.upstream_proxy:
                self.upstream_proxy_name = spec.proxy_name_prefix + "upstream"
                listen = await self._create_proxy(
                    self.upstream_proxy_name, self.mock_url, spec.provider_port or 0
                )
                self.upstream_url = f"http://{listen}{base_path}"
            await self._start_servers()
            front = self.server_url
            # A URL target may live under a path (http://host/app) and speak TLS: the proxy
            # copies bytes, so the client keeps the scheme and the path through it.
            parts = urlsplit(self.server_url)
            if spec.downstream_proxy:
                self.downstream_proxy_name = spec.proxy_name_prefix + "downstream"
                listen = await self._create_proxy(self.downstream_proxy_name, self.server_url)
                front = f"{parts.scheme}://{listen}{parts.path}"
                self.downstream_proxy_url = front
            if spec.nginx:
                if parts.scheme == "https":
                    raise StackError("nginx in front of an https target is not supported")
                host, port = _host_port(front)
                self.nginx = await Nginx.start(
                    port,
                    log_dir=self.log_dir,
                    read_timeout_s=spec.nginx_read_timeout_s,
                    send_timeout_s=spec.nginx_send_timeout_s,
                    gzip_event_stream=spec.nginx_gzip_event_stream,
                    buffering=spec.nginx_buffering,
                    binary=spec.nginx_binary,
                    upstream_host=host,
                    extra_upstream_ports=tuple(_host_port(url)[1] for url in self.server_urls[1:]),
                )
                front = self.nginx.url + parts.path
            self.client_http_url = front
            self.client_ws_url = _ws(front)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop everything that runs, front to back; safe to call twice, and on Ctrl-C."""
        try:
            if self.nginx is not None:
                await self.nginx.stop(self.spec.stop_timeout_s)
            if self.spec.toxiproxy_url is not None:
                await self._delete_proxies()
            # Together: a worker's graceful shutdown waits for its streams, not for the others.
            await asyncio.gather(*(s.stop(self.spec.stop_timeout_s) for s in self.servers))
            # What the servers called, together too: nothing else is left to talk to them.
            await asyncio.gather(
                *(
                    p.stop(self.spec.stop_timeout_s)
                    for p in (self.redis, self.faultproxy, self.mock)
                    if p is not None
                )
            )
        finally:
            # Cancelled or failed half-way: whatever still runs is killed right now.
            for proc in self.processes:
                proc.kill_now()

    async def restart_server(self) -> None:
        """Graceful SIGTERM, wait for the exit, start again on the same port, wait ready;
        every worker, one after the other (a rolling restart)."""
        if not self.servers:
            raise StackError("restart_server: the target is external, nothing to restart")
        for server, url in zip(self.servers, self.server_urls, strict=True):
            await self._restart_one(server, url)

    async def restart_redis(self) -> None:
        """Stop Redis and start it again on the same port, empty (no persistence)."""
        if self.redis is None:
            raise StackError("restart_redis: this stack keeps streams in memory (store='redis')")
        await self.redis.restart(self.spec.ready_timeout_s)

    async def kill_worker(self, worker: int) -> None:
        """SIGKILL worker ``worker`` (1-based, nginx's order); it stays dead."""
        if not 1 <= worker <= len(self.servers):
            raise StackError(f"kill_worker: no worker {worker}; this stack has {len(self.servers)}")
        await self.servers[worker - 1].stop(self.spec.stop_timeout_s, sig=signal.SIGKILL)

    async def _restart_one(self, server: ManagedProcess, url: str) -> None:
        await server.stop(self.spec.stop_timeout_s)
        # The port may still be held a moment by the dying listener: retry briefly.
        deadline = time.monotonic() + self.spec.ready_timeout_s
        while True:
            try:
                await restart_process(server, ready_timeout_s=self.spec.ready_timeout_s)
                break
            except ProcessStartError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        await self._wait_server_ready(server, url)

    # --- pieces --------------------------------------------------------------------------

    async def _start_mock(self) -> None:
        spec = self.spec
        port = spec.provider_port if spec.provider_port and not spec.upstream_proxy else 0
        argv = [self.python, "-m", "mockllm", "--host", LOOPBACK, "--port", str(port)]
        argv += ["--seed", str(spec.mock_seed)]
        if spec.mock_profile is not None:
            argv += ["--profile", spec.mock_profile]
        argv += list(spec.mock_args)
        self.mock = await start_process(
            "mockllm", argv, log_dir=self.log_dir, ready_timeout_s=spec.ready_timeout_s
        )
        assert self.mock.url is not None
        self.mock_url = self.mock.url.rstrip("/")
        # The mock prints its line once listening; nothing more to wait for.

    async def _start_redis(self) -> None:
        self.redis = await RedisServer.start(
            log_dir=self.log_dir,
            binary=self.spec.redis_binary,
            ready_timeout_s=self.spec.ready_timeout_s,
        )

    async def _start_proxy_server(self) -> None:
        spec = self.spec
        if spec.toxiproxy_url is not None:
            self.proxy_api_url = spec.toxiproxy_url.rstrip("/")
            return
        if spec.toxiproxy_binary is not None:
            port = free_port()
            argv = [spec.toxiproxy_binary, "-host", LOOPBACK, "-port", str(port)]
            self.faultproxy = await start_process(
                "toxiproxy-server", argv, log_dir=self.log_dir, ready_pattern=None
            )
            await wait_for_port(LOOPBACK, port, spec.ready_timeout_s, self.faultproxy)
            self.proxy_api_url = f"http://{LOOPBACK}:{port}"
            return
        argv = [self.python, "-m", "scenarios.faultproxy", "--host", LOOPBACK, "--port", "0"]
        argv += ["--seed", str(spec.proxy_seed)]
        self.faultproxy = await start_process(
            "faultproxy", argv, log_dir=self.log_dir, ready_timeout_s=spec.ready_timeout_s
        )
        assert self.faultproxy.url is not None
        self.proxy_api_url = self.faultproxy.url.rstrip("/")

    async def _create_proxy(self, name: str, upstream_url: str, listen_port: int = 0) -> str:
        """Create a Toxiproxy proxy to ``upstream_url``'s host:port; return its listen addr."""
        assert self.proxy_api_url is not None
        host, port = _host_port(upstream_url)
        body = {"name": name, "listen": f"{LOOPBACK}:{listen_port}", "upstream": f"{host}:{port}"}
        async with httpx.AsyncClient(timeout=10.0) as http:
            if self.spec.toxiproxy_url is not None:
                # A leftover of an earlier run on a shared server would make this a 409.
                await http.delete(f"{self.proxy_api_url}/proxies/{name}")
            response = await http.post(f"{self.proxy_api_url}/proxies", json=body)
        if response.status_code != 201:
            raise StackError(
                f"fault proxy at {self.proxy_api_url} refused proxy {name!r}: "
                f"HTTP {response.status_code} {response.text.strip()}"
            )
        self._proxies_created.append(name)
        listen: str = response.json()["listen"]
        # A server that echoes "0.0.0.0:port" or "[::]:port" listens on loopback too.
        return f"{LOOPBACK}:{listen.rsplit(':', 1)[1]}"

    async def _delete_proxies(self) -> None:
        if not self._proxies_created or self.proxy_api_url is None:
            return
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=5.0) as http:
                for name in self._proxies_created:
                    await http.delete(f"{self.proxy_api_url}/proxies/{name}")
        self._proxies_created.clear()

    async def _start_servers(self) -> None:
        spec = self.spec
        if spec.external:
            self.server_url = _http(spec.target)
            self.server_urls = [self.server_url]
            return
        names = (
            [spec.target]
            if spec.server_workers == 1
            else [f"{spec.target}-{i + 1}" for i in range(spec.server_workers)]
        )
        # Started together: each gets ready on its own, and the wait is paid once. When one
        # fails the others are cancelled and finished before the caller's stop() runs.
        tasks = [asyncio.create_task(self._start_server(name)) for name in names]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # self.servers is in the order they printed their line: back to the names' order.
        by_name = {p.name: p for p in self.servers}
        self.servers = [by_name[name] for name in names]
        self.server_urls = [(p.url or "").rstrip("/") for p in self.servers]
        self.server = self.servers[0]
        self.server_url = self.server_urls[0]

    async def _start_server(self, name: str) -> None:
        spec = self.spec
        module = BUILTIN_TARGETS[spec.target].module
        argv = [self.python, "-m", module, "--host", LOOPBACK, "--port", "0"]
        argv += ["--upstream", self.upstream_url]
        if spec.provider != "openai":
            argv += ["--provider", spec.provider]
        if self.redis is not None:
            argv += ["--store", self.redis.url]
        argv += list(spec.server_args)
        env = {**os.environ, **spec.server_env}
        if spec.provider == "anthropic":
            # Anthropic's API needs a max_tokens, and the server's default (4096) would cut
            # the mock's longer answers short: the scenario sets the answer's length.
            env.setdefault("STREAMHARNESS_SERVER_DEFAULT_MAX_TOKENS", str(MOCK_MAX_TOKENS))
        server = await start_process(
            name, argv, log_dir=self.log_dir, env=env, ready_timeout_s=spec.ready_timeout_s
        )
        # Registered at once, so that a failure of another worker still stops this one.
        self.servers.append(server)
        assert server.url is not None
        url = server.url.rstrip("/")
        # Restarts must come back on the same port: pin it in the argv.
        server.argv[server.argv.index("--port") + 1] = str(_host_port(url)[1])
        await self._wait_server_ready(server, url)

    async def _wait_server_ready(self, server: ManagedProcess, url: str) -> None:
        """A built-in server with a readiness path answers it once its app started; others:
        the line they print once listening."""
        ready = BUILTIN_TARGETS[self.spec.target].ready_path
        if ready is None:
            return
        deadline = time.monotonic() + self.spec.ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}{ready}")).status_code == 200:
                        return
                if not server.running or time.monotonic() > deadline:
                    raise ProcessStartError(
                        f"{server.name} never answered {ready}; log {server.log_path}"
                    )
                await asyncio.sleep(0.05)
