"""``streamharness server`` / ``python -m reference_server``: run the reference server.

Flags override ``STREAMHARNESS_SERVER_*`` environment variables. ``--port 0`` picks a free
port; once listening, one line goes to stdout: ``reference_server listening on http://H:P``.
SIGTERM/SIGINT shut down gracefully: live streams end with a retryable ``server_shutdown``
error and WebSockets close with 1001 before uvicorn's own shutdown (which would send 1012).
"""

from __future__ import annotations

import argparse
import gc
import logging
import socket
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from reference_server.app import create_app
from reference_server.manager import StreamManager
from reference_server.settings import Settings

__all__ = ["main"]


class _Server(uvicorn.Server):
    """uvicorn's server, with our graceful shutdown first and the listening line printed."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, host: str) -> None:
        super().__init__(config)
        self._app = app
        self._host = host

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after shutting down (exit status -15); a graceful
        # shutdown is a clean exit for us and for launchers: status 0.
        self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        port = self.servers[0].sockets[0].getsockname()[1]
        print(f"reference_server listening on http://{self._host}:{port}", flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        manager: StreamManager | None = getattr(self._app.state, "manager", None)
        if manager is not None and not manager.shutting_down:
            await manager.shutdown()
        await super().shutdown(sockets)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamharness server",
        description="Reference token-streaming server (WebSocket v1, SSE, blocking, polling).",
        epilog="Every setting is also an environment variable STREAMHARNESS_SERVER_<NAME>; "
        "see docs/reference_server.md.",
    )
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port; 0 picks a free one")
    parser.add_argument("--upstream", default=None, help="OpenAI-compatible base URL (…/v1)")
    parser.add_argument("--api-key", default=None, help="bearer key for the upstream")
    parser.add_argument("--default-model", default=None)
    parser.add_argument("--auth-token", default=None, help="require this bearer token")
    parser.add_argument("--log-level", default=None, help="uvicorn log level (default warning)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        "host": args.host,
        "port": args.port,
        "upstream_url": args.upstream,
        "api_key": args.api_key,
        "default_model": args.default_model,
        "auth_token": args.auth_token,
        "log_level": args.log_level,
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        print(f"reference_server: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s %(message)s"
    )
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
    server = _Server(config, app, settings.host)
    # Modules and the app live as long as the process: out of the collector's reach, full
    # collections walk only what serving allocates (they stall every stream while they run).
    gc.collect()
    gc.freeze()
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    raise SystemExit(main())
