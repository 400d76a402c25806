"""The ``streamharness`` command: one entry point, one subcommand per tool.

Each subcommand lives in the package that owns it and exposes ``main(argv) -> int``; this module
only dispatches. Imports happen inside the small functions below, so ``streamharness mock`` never
imports Locust, and they are plain ``from ... import`` statements the architecture test can see.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable, Sequence

Command = Callable[[list[str]], int]


def _run(argv: list[str]) -> int:
    from scenarios.runner_cli import run_main

    return run_main(argv)


def _list(argv: list[str]) -> int:
    from scenarios.runner_cli import list_main

    return list_main(argv)


def _replay(argv: list[str]) -> int:
    from scenarios.runner_cli import replay_main

    return replay_main(argv)


def _mock(argv: list[str]) -> int:
    from mockllm.cli import main

    return main(argv)


def _server(argv: list[str]) -> int:
    from reference_server.cli import main

    return main(argv)


def _proxy(argv: list[str]) -> int:
    from scenarios.faultproxy.cli import main

    return main(argv)


def _load(argv: list[str]) -> int:
    from loadtests.cli import load_main

    return load_main(argv)


def _bench_transports(argv: list[str]) -> int:
    from loadtests.bench.transports import main

    return main(argv)


def _bench_relay(argv: list[str]) -> int:
    from loadtests.bench.relay import main

    return main(argv)


def _bench_capacity(argv: list[str]) -> int:
    from loadtests.bench.capacity import main

    return main(argv)


def _bench_relayload(argv: list[str]) -> int:
    from loadtests.bench.relayload import main

    return main(argv)


def _bench_lifecycle(argv: list[str]) -> int:
    from loadtests.bench.lifecycle import main

    return main(argv)


def _bench_mock(argv: list[str]) -> int:
    from mockllm.bench import main

    return main(argv)


def _bench_proxy(argv: list[str]) -> int:
    from scenarios.faultproxy.bench import main

    return main(argv)


def _bench_soak(argv: list[str]) -> int:
    from loadtests.bench.soak import main

    return main(argv)


def _bench_mutation(argv: list[str]) -> int:
    from scenarios.mutation import main

    return main(argv)


# name -> (command, one-line summary)
BENCHES: dict[str, tuple[Command, str]] = {
    "transports": (_bench_transports, "TTFT/E2E per transport, clean loopback and +100 ms latency"),
    "relay": (_bench_relay, "direct mock vs reference vs naive server at rising concurrency"),
    "capacity": (_bench_capacity, "load-generator timing error vs frames/s per Locust process"),
    "relayload": (_bench_relayload, "the reference server's CPU per relayed token, N streams"),
    "lifecycle": (_bench_lifecycle, "cancel and drop latency to the provider, one socket's rate"),
    "mock": (_bench_mock, "mockllm's own throughput against a raw-asyncio SSE writer"),
    "proxy": (_bench_proxy, "the fault proxy's added latency and toxic accuracy"),
    "mutation": (_bench_mutation, "the scenario catalogue against small bugs in the server"),
    "soak": (_bench_soak, "memory of server, mock and proxy across rounds of dropped streams"),
}


def _bench(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(_table("usage: streamharness bench NAME [options]", "benchmarks:", BENCHES))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        print(
            f"streamharness bench: unknown benchmark {name!r}{_did_you_mean(name, BENCHES)}; "
            f"choose from {', '.join(BENCHES)}",
            file=sys.stderr,
        )
        return 2
    return BENCHES[name][0](rest)


SUBCOMMANDS: dict[str, tuple[Command, str]] = {
    "run": (_run, "run scenarios against the reference stack or a target"),
    "list": (_list, "list the scenario catalogue"),
    "replay": (_replay, "replay one scenario with a given seed"),
    "mock": (_mock, "start the deterministic mock LLM provider"),
    "server": (_server, "start the reference streaming server"),
    "proxy": (
        _proxy,
        "start the Toxiproxy-compatible fault proxy, or drive one: list, toxic add ...",
    ),
    "load": (_load, "run a Locust load test with streaming metrics and gates"),
    "bench": (_bench, "run a benchmark: " + ", ".join(BENCHES)),
}


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _table(usage: str, heading: str, commands: dict[str, tuple[Command, str]]) -> str:
    width = max(len(name) for name in commands)
    lines = [usage, "", heading]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in commands.items()]
    return "\n".join(lines)


def _usage() -> str:
    return (
        _table(
            "usage: streamharness <command> [options]\n\n"
            "Test harness and deterministic mock LLM provider for token-streaming systems.",
            "commands:",
            SUBCOMMANDS,
        )
        + "\n\nRun 'streamharness <command> --help' for the options of one command."
    )


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
        hint = _did_you_mean(name, SUBCOMMANDS)
        print(f"streamharness: unknown command {name!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    return SUBCOMMANDS[name][0](rest)


if __name__ == "__main__":
    raise SystemExit(main())
