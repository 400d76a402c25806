"""A small client for Toxiproxy-compatible servers, on top of ``toxiproxy-python``.

``toxiproxy-python`` 0.1.1 is the user's named client, but it has no timeouts, no toxic update
or single-toxic read, emulates ``/populate`` client-side, does not raise on 5xx, and keeps host
and port in process-global class attributes. :class:`ToxiproxyClient` keeps its transport
(``toxiproxy.api.APIConsumer`` and its ``validate_response``), giving each client its own
subclass so several servers can be driven at once, and adds what is missing::

    client = ToxiproxyClient("http://127.0.0.1:8474", timeout=5.0)
    proxy = client.create_proxy("llm", upstream="127.0.0.1:9000")
    client.add_toxic("llm", "latency", attributes={"latency": 100, "jitter": 10})
    client.update_toxic("llm", "latency_downstream", attributes={"latency": 300})
    client.populate([{"name": "db", "upstream": "127.0.0.1:5432", "listen": "127.0.0.1:0"}])

Every failure is a :class:`~scenarios.faultproxy.errors.FaultProxyError`: the server's answer
(:class:`ApiError`, :class:`NotFound`, :class:`AlreadyExists`, 5xx included) or no answer
(:class:`ServerUnavailable`). The calls block (``requests``); from asyncio code run them with
``asyncio.to_thread``.

Which server: :func:`server_from_env` is the one place that reads ``TOXIPROXY_URL``;
:func:`start_server` uses that URL, else a ``toxiproxy-server`` binary on PATH, else starts
the embedded server (``python -m scenarios.faultproxy``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote, urlsplit

import requests
from toxiproxy import exceptions as tp_exceptions
from toxiproxy.api import APIConsumer

from mockllm.childproc import free_port, start_child, stop_process
from scenarios.faultproxy.errors import ApiError, FaultProxyError, ServerUnavailable

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ProxyInfo",
    "RunningServer",
    "ServerChoice",
    "ToxicInfo",
    "ToxiproxyClient",
    "server_from_env",
    "start_server",
]

DEFAULT_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class ToxicInfo:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: Mapping[str, int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToxicInfo:
        return cls(
            name=data["name"],
            type=data["type"],
            stream=data["stream"],
            toxicity=float(data["toxicity"]),
            attributes=dict(data.get("attributes") or {}),
        )


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[ToxicInfo, ...] = ()

    @property
    def port(self) -> int:
        """The port clients connect to (``listen`` is resolved once the proxy listens)."""
        return int(self.listen.rpartition(":")[2])

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProxyInfo:
        return cls(
            name=data["name"],
            listen=data["listen"],
            upstream=data["upstream"],
            enabled=bool(data["enabled"]),
            toxics=tuple(ToxicInfo.from_json(t) for t in data.get("toxics") or ()),
        )


def _seg(name: str) -> str:
    """A name as one URL path segment: "a/b" and "x?y" stay names, not paths or queries."""
    return quote(name, safe="")


def _error_from(response: requests.Response) -> ApiError:
    try:
        body = response.json()
        message = str(body.get("error", response.text.strip()))
    except (ValueError, AttributeError):
        message = response.text.strip() or response.reason
    return ApiError.from_status(message, response.status_code)


class ToxiproxyClient:
    """Blocking client of one Toxiproxy-compatible server (timeouts on every call)."""

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"base_url must be http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # A private subclass: toxiproxy-python reads host/port from class attributes, so a
        # subclass per client keeps two clients (two servers) from overwriting each other.
        self._api: type[APIConsumer] = type(
            "APIConsumer", (APIConsumer,), {"host": parts.hostname, "port": parts.port}
        )

    # -- transport -----------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> requests.Response:
        try:
            if method == "GET":
                response: requests.Response = self._api.get(path, timeout=self.timeout)
            elif method == "DELETE":
                response = self._api.delete(path, timeout=self.timeout)
            else:
                response = self._api.post(path, json=body, timeout=self.timeout)
        except (
            tp_exceptions.NotFound,
            tp_exceptions.ProxyExists,
            tp_exceptions.InvalidToxic,
        ) as exc:
            # validate_response raised on 404/409/400; the response is in the traceback
            # only as bytes, so rebuild a typed error from them.
            raise _from_toxiproxy_exception(exc) from None
        except requests.Timeout as exc:
            raise ServerUnavailable(f"{method} {self.base_url}{path}: timed out") from exc
        except requests.RequestException as exc:
            raise ServerUnavailable(f"{method} {self.base_url}{path}: {exc}") from exc
        if response.status_code >= 300:
            # toxiproxy-python lets 403 and 5xx through as if they were successes.
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._call(method, path, body)
        try:
            return response.json()
        except ValueError as exc:
            raise ServerUnavailable(
                f"{method} {path}: unreadable answer {response.text!r}"
            ) from exc

    # -- server --------------------------------------------------------------------------

    def version(self) -> str:
        text = self._call("GET", "/version").text.strip()
        # The real server answers JSON since 2.2; older ones answered plain text.
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            return str(json.loads(text)["version"])
        return text

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")

    def metrics(self) -> str:
        return self._call("GET", "/metrics").text

    def populate(self, proxies: Sequence[Mapping[str, Any]]) -> list[ProxyInfo]:
        """The server's own ``/populate`` (all items validated before anything changes)."""
        data = self._json("POST", "/populate", list(proxies))
        return [ProxyInfo.from_json(p) for p in data.get("proxies") or ()]

    # -- proxies -------------------------------------------------------------------------

    def proxies(self) -> dict[str, ProxyInfo]:
        data = self._json("GET", "/proxies")
        return {name: ProxyInfo.from_json(p) for name, p in data.items()}

    def create_proxy(
        self,
        name: str,
        upstream: str,
        listen: str = "127.0.0.1:0",
        enabled: bool = True,
        seed: int | None = None,
    ) -> ProxyInfo:
        body: dict[str, Any] = {
            "name": name,
            "upstream": upstream,
            "listen": listen,
            "enabled": enabled,
        }
        if seed is not None:
            body["seed"] = seed
        return ProxyInfo.from_json(self._json("POST", "/proxies", body))

    def get_proxy(self, name: str) -> ProxyInfo:
        return ProxyInfo.from_json(self._json("GET", f"/proxies/{_seg(name)}"))

    def update_proxy(self, name: str, **fields: Any) -> ProxyInfo:
        """Change ``listen``, ``upstream`` and/or ``enabled`` (POST: older servers lack PATCH)."""
        return ProxyInfo.from_json(self._json("POST", f"/proxies/{_seg(name)}", fields))

    def enable(self, name: str) -> ProxyInfo:
        return self.update_proxy(name, enabled=True)

    def disable(self, name: str) -> ProxyInfo:
        """Take the proxy down: live connections are closed, new ones refused."""
        return self.update_proxy(name, enabled=False)

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{_seg(name)}")

    # -- toxics --------------------------------------------------------------------------

    def toxics(self, proxy: str) -> list[ToxicInfo]:
        return [ToxicInfo.from_json(t) for t in self._json("GET", f"/proxies/{_seg(proxy)}/toxics")]

    def add_toxic(
        self,
        proxy: str,
        type: str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        attributes: Mapping[str, int] | None = None,
        seed: int | None = None,
    ) -> ToxicInfo:
        body: dict[str, Any] = {
            "type": type,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": dict(attributes or {}),
        }
        if name is not None:
            body["name"] = name
        if seed is not None:
            body["seed"] = seed
        return ToxicInfo.from_json(self._json("POST", f"/proxies/{_seg(proxy)}/toxics", body))

    def get_toxic(self, proxy: str, name: str) -> ToxicInfo:
        return ToxicInfo.from_json(self._json("GET", f"/proxies/{_seg(proxy)}/toxics/{_seg(name)}"))

    def update_toxic(
        self,
        proxy: str,
        name: str,
        *,
        attributes: Mapping[str, int] | None = None,
        toxicity: float | None = None,
    ) -> ToxicInfo:
        """Merge ``attributes`` key by key into the toxic; live connections see it at once."""
        body: dict[str, Any] = {}
        if attributes is not None:
            body["attributes"] = dict(attributes)
        if toxicity is not None:
            body["toxicity"] = toxicity
        return ToxicInfo.from_json(
            self._json("POST", f"/proxies/{_seg(proxy)}/toxics/{_seg(name)}", body)
        )

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{_seg(proxy)}/toxics/{_seg(name)}")


def _from_toxiproxy_exception(exc: Exception) -> ApiError:
    status = {
        tp_exceptions.NotFound: 404,
        tp_exceptions.ProxyExists: 409,
        tp_exceptions.InvalidToxic: 400,
    }[type(exc)]
    raw = exc.args[0] if exc.args else b""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    try:
        message = str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        message = text.strip()
    return ApiError.from_status(message, status)


# --------------------------------------------------------------------------------------------
# Which server, and starting one.


@dataclass(frozen=True, slots=True)
class ServerChoice:
    """Where the harness's Toxiproxy-compatible server comes from."""

    url: str | None = None  # an already running server (TOXIPROXY_URL)
    binary: str | None = None  # a real toxiproxy-server to start


def server_from_env(environ: Mapping[str, str] | None = None) -> ServerChoice:
    """``TOXIPROXY_URL``, else a ``toxiproxy-server`` on PATH, else (empty) the embedded one."""
    env = os.environ if environ is None else environ
    url = env.get("TOXIPROXY_URL", "").strip()
    if url:
        return ServerChoice(url=url.rstrip("/"))
    binary = shutil.which("toxiproxy-server", path=env.get("PATH"))
    return ServerChoice(binary=binary) if binary else ServerChoice()


@dataclass
class RunningServer:
    """A server the harness uses; stops the process it started (if any) on exit."""

    url: str
    kind: str  # "external" | "toxiproxy-server" | "embedded"
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    def client(self, timeout: float = DEFAULT_TIMEOUT_S) -> ToxiproxyClient:
        return ToxiproxyClient(self.url, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process is not None:
            stop_process(self.process, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_ready(client: ToxiproxyClient, proc: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"toxiproxy-server exited with {proc.returncode}")
        with contextlib.suppress(FaultProxyError):
            client.version()
            return
        time.sleep(0.05)
    raise ServerUnavailable("toxiproxy-server did not answer in time")


def start_server(
    seed: int = 0,
    *,
    choice: ServerChoice | None = None,
    ready_timeout: float = 15.0,
    extra_args: Sequence[str] = (),
) -> RunningServer:
    """Use ``TOXIPROXY_URL``, or start ``toxiproxy-server``, or start the embedded server.

    The seed only applies to the embedded server (the real one draws from an unseeded RNG).
    """
    choice = server_from_env() if choice is None else choice
    if choice.url is not None:
        return RunningServer(choice.url, "external")
    deadline = time.monotonic() + ready_timeout
    if choice.binary is not None:
        port = free_port()
        proc = subprocess.Popen(
            [choice.binary, "-host", "127.0.0.1", "-port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        running = RunningServer(f"http://127.0.0.1:{port}", "toxiproxy-server", proc)
        try:
            _wait_ready(running.client(timeout=1.0), proc, deadline)
        except BaseException:
            running.stop()
            raise
        return running
    argv = [sys.executable, "-m", "scenarios.faultproxy", "--port", "0", "--seed", str(seed)]
    child = start_child(
        [*argv, *extra_args],
        timeout_s=ready_timeout,
        stderr=subprocess.STDOUT,
        failure=lambda started: ServerUnavailable(
            "embedded fault proxy did not start: " + started.text[-2000:]
        ),
    )
    return RunningServer(child.url, "embedded", child.proc, child.output)
