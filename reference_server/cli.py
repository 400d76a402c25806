"""``streamharness server`` / ``python -m reference_server``: run the reference server.

Flags override ``STREAMHARNESS_SERVER_*`` environment variables. ``--port 0`` picks a free
port; once listening, one line goes to stdout: ``reference_server listening on http://H:P``.
Bad flags or settings (and an address it cannot listen on) get one line on stderr,
``streamharness server: error: ...``, and exit status 2. Secrets come from the environment or
a file (``--api-key-file``): a secret flag is readable by every local user in the process list,
so using one prints a warning.
SIGTERM/SIGINT shut down gracefully: live streams end with a retryable ``server_shutdown``
error and WebSockets close with 1001 before uvicorn's own shutdown (which would send 1012).

``--workers N`` (with ``--store redis://...``): the socket is bound and listening here, then N
forked children each run the same server on it (the kernel spreads connections over them), as
uvicorn's own ``--workers`` does but with our server class in every child, so each keeps the
graceful shutdown above. The parent prints the one ``listening on`` line, passes SIGTERM/SIGINT
to every child and exits 0 when all of them did. A worker that dies is not restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from mockllm.cliargs import CommandParser, port
from mockllm.uvserver import PromptServer
from reference_server.app import create_app
from reference_server.manager import StreamManager
from reference_server.providers import PROVIDER_NAMES
from reference_server.settings import ENV_PREFIX, LOG_LEVELS, Settings

__all__ = ["main"]


class _Server(PromptServer):
    """uvicorn's server, with our graceful shutdown first and the listening line printed."""

    def __init__(
        self, config: uvicorn.Config, app: FastAPI, host: str, announce: bool = True
    ) -> None:
        super().__init__(config)
        self._app = app
        self._host = host
        self._announce = announce

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down (exit status -15); a graceful
        # shutdown is a clean exit for us and for launchers: status 0.
        self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers or not self._announce:
            return
        port = self.servers[0].sockets[0].getsockname()[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        print(f"reference_server listening on http://{host}:{port}", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        manager: StreamManager | None = getattr(self._app.state, "manager", None)
        if manager is not None and not manager.shutting_down:
            await manager.shutdown()
        await super().shutdown(sockets)


PROG = "streamharness server"

# The settings a flag sets (the others come from the environment only).
_FLAGS = {
    "host": "--host",
    "port": "--port",
    "provider": "--provider",
    "upstream_url": "--upstream",
    "default_model": "--default-model",
    "log_level": "--log-level",
    "store": "--store",
    "workers": "--workers",
}
_SECRETS = {"api_key": "provider's API key", "auth_token": "bearer token clients must send"}


class UsageError(Exception):
    """Bad command-line input: one line for stderr, exit status 2."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _workers(text: str) -> int:
    try:
        workers = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= workers <= 64:
        raise argparse.ArgumentTypeError(f"must be 1-64, got {workers}")
    return workers


SERVER_EXAMPLES = """\
Examples:
  streamharness mock --port 9000 &                 # a provider to relay
  streamharness server --port 8000 --upstream http://127.0.0.1:9000/v1
  streamharness server --provider anthropic --upstream http://127.0.0.1:9000/v1
  streamharness server --port 0 --workers 4 --store redis://127.0.0.1:6379/0
"""


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Reference token-streaming server (WebSocket v1, SSE, blocking, polling).",
        epilog=f"Every setting is also an environment variable {ENV_PREFIX}<NAME>; "
        "see docs/reference_server.md.\n\n" + SERVER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=None, help="port; 0 picks a free one")
    parser.add_argument(
        "--provider",
        choices=PROVIDER_NAMES,
        default=None,
        help="the upstream's API: OpenAI chat, Anthropic Messages or Ollama /api/chat "
        "(default openai)",
    )
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="URL",
        help="the provider's base URL: …/v1 for openai and anthropic, …/api for ollama "
        "(default http://127.0.0.1:8080/v1; ollama: http://127.0.0.1:11434/api)",
    )
    parser.add_argument(
        "--default-model",
        default=None,
        metavar="NAME",
        help="model asked of the provider when a client names none (default gpt-4o-mini)",
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="uvicorn log level (default warning)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="memory|redis://HOST:PORT/DB",
        help="where streams live (default memory: this process only)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        help="worker processes on one port (default 1; more need --store redis://...)",
    )
    for name, what in _SECRETS.items():
        flag = _flag(name)
        env = ENV_PREFIX + name.upper()
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            f"{flag}-file",
            metavar="PATH",
            default=None,
            help=f"read the {what} from this file (or set {env})",
        )
        group.add_argument(
            flag,
            default=None,
            help=f"the {what}; every local user sees it in the process list: prefer {env} "
            f"or {flag}-file",
        )
    return parser


def _read_secret(path: str, flag: str) -> str:
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag}: {path} is not UTF-8 text") from None
    # The newline an editor or `echo` leaves at the end is not part of the key.
    secret = text.strip()
    if not secret:
        raise UsageError(f"{flag}: {path} is empty")
    return secret


def _describe(exc: ValidationError, flags: Mapping[str, str]) -> str:
    """A settings error as one line, naming the flag or environment variable to fix."""
    parts = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        where = flags.get(name) or (ENV_PREFIX + name.upper() if name else "settings")
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def settings_from(argv: Sequence[str] | None) -> Settings:
    """The settings the command line and the environment ask for, or :class:`UsageError`.

    A secret given as a flag gets its warning on stderr here."""
    args = _parser().parse_args(argv)
    # setting -> (the flag that set it, its value): an error names what to fix.
    given: dict[str, tuple[str, Any]] = {}
    for name, flag in _FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            given[name] = (flag, value)
    for name in _SECRETS:
        flag = _flag(name)
        path, value = getattr(args, f"{name}_file"), getattr(args, name)
        if path is not None:
            given[name] = (f"{flag}-file", _read_secret(path, f"{flag}-file"))
        elif value is not None:
            given[name] = (flag, value)
    try:
        settings = Settings(**{name: value for name, (_, value) in given.items()})
    except ValidationError as exc:
        flags = {name: flag for name, (flag, _) in given.items()}
        raise UsageError(_describe(exc, flags)) from None
    for name, (flag, _) in given.items():
        if name in _SECRETS and flag == _flag(name):
            print(
                f"{PROG}: warning: {flag} is visible to every local user in the process list; "
                f"set {ENV_PREFIX}{name.upper()} or use {flag}-file PATH instead",
                file=sys.stderr,
            )
    return settings


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so a bad address is our error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"cannot listen on {host} port {port}: {reason} (check --host and --port)"
        ) from None
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = settings_from(argv)
        sock = _listen(settings.host, settings.port)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
    if settings.workers > 1:
        return _supervise(settings, sock)
    return _serve(settings, sock, announce=True)


def _serve(settings: Settings, sock: socket.socket, announce: bool) -> int:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ws=settings.ws_backend,
        ws_max_size=settings.max_message_bytes,
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_ping_interval=settings.heartbeat_interval_s,
        ws_ping_timeout=settings.heartbeat_deadline_s,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 2,
        lifespan="on",
    )
    server = _Server(config, app, settings.host, announce)
    # Modules and the app live as long as the process: out of the collector's reach, full
    # collections walk only what serving allocates (they stall every stream while they run).
    gc.collect()
    gc.freeze()
    server.run(sockets=[sock])
    return 0 if server.started else 1


def _supervise(settings: Settings, sock: socket.socket) -> int:
    """Fork ``settings.workers`` servers on one listening socket; pass signals on; reap."""
    sock.listen(2048)  # connections wait in the backlog until a worker accepts them
    sock.set_inheritable(True)
    children: set[int] = set()
    for _ in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; its exit status is what is tested
            code = 1
            try:
                code = _serve(settings, sock, announce=False)
            finally:
                os._exit(code)
        children.add(pid)

    def forward(sig: int, _: FrameType | None) -> None:
        for child in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"reference_server listening on http://{shown}:{port}", flush=True)
    failed = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            failed += 1
    sock.close()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
