"""``streamharness mock`` / ``python -m mockllm``: run the mock provider."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import socket
import sys
from collections.abc import Sequence

from mockllm.app import DEFAULT_MODELS, MockApp, MockConfig
from mockllm.cliargs import CommandParser, port
from mockllm.config import MAX_WORKERS, workers_problem
from mockllm.errors import RuleError
from mockllm.listen import bind_socket
from mockllm.profiles import PROFILES
from mockllm.rules import Rule
from mockllm.rulesfile import load_rules_file
from mockllm.server import make_uvicorn_server

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="streamharness mock",
        description="Deterministic OpenAI-compatible streaming mock provider. See docs/mockllm.md.",
        epilog="""\
Examples:
  streamharness mock --port 9000                   # base URL http://127.0.0.1:9000/v1
  streamharness mock --port 0 --profile fast --seed 7
  streamharness mock --rules rules.yaml            # faults and answers chosen per request
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port, default=8000, help="port (default 8000; 0 picks a free one)"
    )
    parser.add_argument("--seed", type=int, default=0, help="global content seed (default 0)")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="instant",
        help="default timing profile (default instant)",
    )
    parser.add_argument("--rules", metavar="FILE", help="YAML or JSON rules file")
    parser.add_argument(
        "--directives",
        action="store_true",
        help="honour [[mock ...]] directives inside prompts (opt-in)",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help=f"a model name to serve (repeatable; default: {', '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--any-model",
        action="store_true",
        help="answer every model name a client asks for, not only the --model ones",
    )
    parser.add_argument(
        "--ledger-size",
        type=int,
        default=20_000,
        metavar="N",
        help="requests kept in the ledger, oldest dropped first (default 20000)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes serving the port, one ledger and admin API for all "
        f"(default 1; at most {MAX_WORKERS}; see docs/mockllm.md, 'Several workers')",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop implementation (default auto: uvloop when installed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.ledger_size < 1:
        parser.error(f"--ledger-size must be at least 1, got {args.ledger_size}")
    problem = workers_problem(args.workers)
    if problem:
        parser.error(f"--{problem}")
    rules: list[Rule] = []
    if args.rules:
        try:
            rules = load_rules_file(args.rules)
        except RuleError as exc:
            print(f"streamharness mock: error: {exc.message}", file=sys.stderr)
            return 2
    config = MockConfig(
        seed=args.seed,
        profile=args.profile,
        directives=args.directives,
        models=tuple(args.models) if args.models else DEFAULT_MODELS,
        any_model=args.any_model,
        rules=rules,
        ledger_size=args.ledger_size,
        manage_gc=True,
        workers=args.workers,
    )
    try:
        if args.workers > 1:
            # Imported only here: the workers' admin fan-out (httpx) costs a one-process start
            # ~40 ms.
            from mockllm.workers import listeners, run_workers

            public = listeners(args.host, args.port, args.workers)
            sock = public[0]
        else:
            sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(
            f"streamharness mock: error: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    if args.workers > 1:
        return run_workers(
            config, public, loop=args.loop, on_ready=lambda: _announce(args.host, sock)
        )
    server = make_uvicorn_server(MockApp(config), loop=args.loop)
    # A stop signal is a graceful shutdown with status 0 from the moment the address is
    # announced: uvicorn takes SIGINT/SIGTERM over while it serves and, once stopped, raises
    # what it caught again, which lands here and finds the server stopped already.
    previous = {sig: signal.signal(sig, lambda *_: server.request_exit()) for sig in _STOP_SIGNALS}
    # Everything allocated so far (modules, the app) lives as long as the process: move it out
    # of the collector's reach so full collections stay short and do not stall streams.
    gc.collect()
    gc.freeze()
    _announce(args.host, sock)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return 0


def _announce(host: str, sock: socket.socket) -> None:
    """The address line launchers wait for. The socket already listens, so announcing it
    before serving is safe: early clients wait in the backlog."""
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"mockllm listening on http://{shown}:{port}", flush=True)
    print(f"OPENAI_BASE_URL=http://{shown}:{port}/v1", flush=True)
    _log_to_stderr()


def _log_to_stderr() -> None:
    """The mock's own log lines (one at shutdown) on stderr; uvicorn keeps its own setup."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mockllm: %(message)s"))
    log = logging.getLogger("mockllm")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
