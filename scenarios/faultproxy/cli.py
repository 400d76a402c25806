"""``streamharness proxy [serve]``: run the embedded Toxiproxy-compatible server.

``streamharness proxy list|inspect|create|delete|toggle|toxic ...`` drives a running server
instead (``ctl.py``); any other first word, or ``serve``, starts the server.

Prints ``faultproxy listening on http://HOST:PORT`` (one line, flushed) once the API accepts
connections, and exits 0 on SIGTERM/SIGINT after closing every proxy. Bad options, a
``--config`` that cannot be used and an API address that cannot be bound all end the process
before it serves, with exit status 2 and one line on stderr, argparse style
(``streamharness proxy: error: ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import gc
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import uvicorn

from mockllm.cliargs import CommandParser, port
from mockllm.listen import bind_socket
from mockllm.uvserver import PromptServer
from scenarios.faultproxy.api import DEFAULT_LISTEN, create_app
from scenarios.faultproxy.engine import Engine
from scenarios.faultproxy.errors import ApiError, FaultProxyError
from scenarios.faultproxy.models import parse_json, populate_items

__all__ = ["main", "parse_args", "serve"]

PROG = "streamharness proxy"


class UsageError(FaultProxyError):
    """Ends the command before it serves: one line on stderr, exit status 2."""


class _Parser(CommandParser):
    """The shared error style, raised (``parse_args`` is also called by the stack)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.explain(message)} (see --help)")


class _Server(PromptServer):
    """uvicorn server that announces itself once the API socket accepts requests."""

    def __init__(self, on_started: Callable[[], None], config: uvicorn.Config) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options, checked; raises :class:`UsageError` on any bad one."""
    parser = _Parser(
        prog=PROG,
        description="Toxiproxy-compatible TCP fault proxy with seeded, replayable toxics. "
        "To drive a running one (this or a real Toxiproxy) in the habits of toxiproxy-cli: "
        "streamharness proxy list|inspect|create|delete|toggle|toxic ... (see "
        "'streamharness proxy list --help').",
        epilog="""\
Examples:
  streamharness proxy                              # the API on 127.0.0.1:8474
  streamharness proxy serve --port 0 --seed 42     # a free port, seeded toxics
  streamharness proxy --config proxies.json        # proxies created at start (POST /populate)
  streamharness proxy toxic add -t latency -a latency=100 llm   # then drive it
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port, default=8474, help="API port (default 8474; 0 picks a free port)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of jitter, toxicity and slicer draws (default 0); a proxy or toxic "
        "may override it with an extra 'seed' field",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="JSON file of proxies to create at start (same shape as POST /populate)",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="event loop (default auto: uvloop when installed, else asyncio)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="uvicorn log level of the API (default warning)",
    )
    return parser.parse_args(argv)


def _load_config(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --config {path}: {exc.strerror}") from None
    try:
        return parse_json(raw)
    except ApiError as exc:
        detail = exc.message.removeprefix("bad request body: ")
        raise UsageError(f"--config {path} is not JSON: {detail}") from None


def _bind_api(host: str, port: int) -> socket.socket:
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        # The words of `streamharness mock` for the same problem.
        raise UsageError(f"cannot listen on {host}:{port}: {exc}") from None
    sock.setblocking(False)
    return sock


async def serve(
    host: str,
    port: int,
    seed: int,
    config: Any = None,
    log_level: str = "warning",
    ready: asyncio.Event | None = None,
    freeze_gc: bool = False,
) -> int:
    """Run the API until told to stop; returns the exit code.

    Raises :class:`UsageError` before serving if the API address cannot be bound or the
    ``config`` (a ``/populate`` body) is refused; nothing is left open then.
    """
    engine = Engine(seed=seed)
    try:
        sock = _bind_api(host, port)
        if config is not None:
            try:
                await engine.populate(populate_items(config, default_listen=DEFAULT_LISTEN))
            except ApiError as exc:
                sock.close()
                raise UsageError(f"--config rejected: {exc.message}") from None
    except UsageError:
        await engine.close()
        raise
    bound_port = sock.getsockname()[1]

    def announce() -> None:
        if freeze_gc:
            # Everything alive now (FastAPI, uvicorn, pydantic: ~50 k objects) lives as long
            # as the process. Frozen, the collector no longer walks it: a full collection
            # then takes microseconds instead of ~10 ms, and does not stall the deliveries
            # of every toxic in flight.
            gc.collect()
            gc.freeze()
        shown = f"[{host}]" if ":" in host else host
        print(f"faultproxy listening on http://{shown}:{bound_port}", flush=True)
        if ready is not None:
            ready.set()

    server = _Server(
        announce,
        uvicorn.Config(
            create_app(engine),
            log_level=log_level,
            access_log=log_level == "debug",
            lifespan="off",
            timeout_graceful_shutdown=2,
        ),
    )

    try:
        await server.serve(sockets=[sock])
    finally:
        await engine.close()
        sock.close()
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        args = args[1:]
    elif args and not args[0].startswith("-"):
        # Imported only here: the client side (requests) costs the server's start ~60 ms.
        from scenarios.faultproxy.ctl import COMMANDS
        from scenarios.faultproxy.ctl import main as ctl_main

        if args[0] in COMMANDS:
            return ctl_main(args)
        # The server takes no positional argument: a first word is a mistyped command.
        close = difflib.get_close_matches(args[0], sorted(COMMANDS | {"serve"}), n=1)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else "commands: serve, "
            + ", ".join(("list", "inspect", "create", "delete", "toggle", "toxic"))
        )
        return _fail(f"unknown command {args[0]!r} ({hint}) (see --help)")
    try:
        return _main(args)
    except UsageError as exc:
        return _fail(str(exc))


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    config = _load_config(args.config) if args.config is not None else None
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")

    # uvicorn re-raises the signal it caught once it has shut down; with these handlers in
    # place that re-raise is a no-op and the process exits 0 instead of dying of SIGTERM.
    def ignore(signum: int, frame: object) -> None:
        return None

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, ignore)
    coro = serve(args.host, args.port, args.seed, config, args.log_level, freeze_gc=True)
    if args.loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if args.loop == "uvloop":
                coro.close()
                raise UsageError("--loop uvloop, but uvloop is not installed") from None
        else:
            # Less work per socket event than the pure-Python loop: less delay per delivery.
            return uvloop.run(coro)
    return asyncio.run(coro)


if __name__ == "__main__":
    raise SystemExit(main())
