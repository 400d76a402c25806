"""The ``streamharness`` command: one entry point, one subcommand per tool.

Each subcommand lives in the package that owns it and exposes ``main(argv) -> int``.
They are looked up by module path on demand, so ``streamharness mock`` never imports
Locust and the dependency arrows between our packages stay one-way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Protocol


class _SubcommandMain(Protocol):
    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


# name -> (module, attribute, one-line summary)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "scenarios.runner_cli",
        "run_main",
        "run scenarios against the reference stack or a target",
    ),
    "list": ("scenarios.runner_cli", "list_main", "list the scenario catalogue"),
    "replay": ("scenarios.runner_cli", "replay_main", "replay one scenario with a given seed"),
    "mock": ("mockllm.cli", "main", "start the deterministic mock LLM provider"),
    "server": ("reference_server.cli", "main", "start the reference streaming server"),
    "proxy": ("scenarios.faultproxy.cli", "main", "start the Toxiproxy-compatible fault proxy"),
    "load": (
        "loadtests.cli",
        "load_main",
        "run a Locust load test with streaming metrics and gates",
    ),
    "bench": ("loadtests.cli", "bench_main", "run a benchmark (transports, relay, mock, proxy)"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [
        "usage: streamharness <command> [options]",
        "",
        "Test harness and deterministic mock LLM provider for token-streaming systems.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, _, summary) in SUBCOMMANDS.items()]
    lines += ["", "Run 'streamharness <command> --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"streamharness {version('streamharness')}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"streamharness: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, attribute, _ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"streamharness: command {name!r} is not available yet", file=sys.stderr)
        return 2
    command: _SubcommandMain = getattr(module, attribute)
    return command(rest)


if __name__ == "__main__":
    raise SystemExit(main())
