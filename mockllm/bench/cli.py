"""``python -m mockllm.bench``: start the servers, run the workloads in alternating rounds,
print a table of medians and the ratios measured in the same rounds (and JSON on request)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from mockllm.bench.client import (
    StreamResult,
    all_active_window,
    gap_errors_ms,
    gap_summary,
    run_streams,
    run_users,
    summary_ms,
)
from mockllm.bench.formats import formats_table, measure_formats
from mockllm.bench.servers import (
    DEFAULT_AIMOCK_DIR,
    aimock_command,
    aimock_fixtures,
    main_serve,
    pin,
)
from mockllm.childproc import start_child, stop_process
from mockllm.cliargs import CommandParser

__all__ = ["build_parser", "main"]

RUNS = ("requests", "burst", "long", "timing", "formats")
#: The name of the row of the mock run with ``--workers N`` ("mockllm x2 workers").
WORKERS_ROW = "mockllm x"
#: The cores this process may use when it starts, before it keeps the server's core free.
_ALL_CPUS = frozenset(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Server:
    name: str
    proc: subprocess.Popen[str]
    host: str
    port: int


def _cpu_s(proc: subprocess.Popen[str]) -> float:
    """User + system CPU seconds of the process (every thread of it) and of its children
    (the workers of ``--workers N``)."""
    process = psutil.Process(proc.pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        times = each.cpu_times()
        total += times.user + times.system
    return total


def _cpus(proc: subprocess.Popen[str]) -> list[int]:
    """The cores the process and its children (the workers of ``--workers N``) may run on."""
    process = psutil.Process(proc.pid)
    cpus: set[int] = set()
    for each in [process, *process.children(recursive=True)]:
        cpus.update(each.cpu_affinity() or [])
    return sorted(cpus)


def _per(total: float, count: int, scale: float = 1.0) -> float | None:
    return round(total / count * scale, 1) if count else None


def _ok(results: list[StreamResult]) -> list[StreamResult]:
    return [r for r in results if r.error is None]


def _failed(results: list[StreamResult]) -> dict[str, Any]:
    errors = [r.error for r in results if r.error is not None]
    return {"failed": len(errors), "first_error": errors[0] if errors else None}


def measure_requests(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Users on keep-alive connections, requests back to back for a duration, zero delay."""
    tokens = args.request_tokens
    asyncio.run(
        run_users(server.host, server.port, min(args.users, 20), tokens, 0, requests_each=3)
    )
    before, client_before = _cpu_s(server.proc), time.process_time()
    wall, per_user = asyncio.run(
        run_users(server.host, server.port, args.users, tokens, 0, duration_s=args.duration_s)
    )
    cpu = _cpu_s(server.proc) - before
    client_cpu = time.process_time() - client_before
    results = [r for user in per_user for r in user]
    ok = _ok(results)
    chunks = sum(r.tokens for r in ok)
    ttfts = [r.ttft for r in ok if r.ttft is not None]
    return {
        "users": args.users,
        "chunks_per_request": tokens,
        "requests": len(ok),
        "chunks": chunks,
        "wall_s": round(wall, 3),
        "chunks_per_s": round(chunks / wall),
        "requests_per_s": round(len(ok) / wall, 1),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(100 * cpu / wall, 1),
        "cpu_us_per_request": _per(cpu, len(ok), 1e6),
        "cpu_us_per_chunk": _per(cpu, chunks, 1e6),
        # The client shares the machine: what it takes bounds what several workers can show.
        "client_cpu_us_per_request": _per(client_cpu, len(ok), 1e6),
        "server_cpus": _cpus(server.proc),
        "ttft_ms": summary_ms(ttfts, scale=1000.0),
        **_failed(results),
    }


def measure_burst(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """All users start at once (their first requests are the burst), paced tokens."""
    tokens, itl = args.burst_tokens, args.burst_itl_ms
    asyncio.run(run_users(server.host, server.port, 20, tokens, 0, requests_each=2))
    before = _cpu_s(server.proc)
    wall, per_user = asyncio.run(
        run_users(
            server.host,
            server.port,
            args.burst_streams,
            tokens,
            itl,
            requests_each=args.burst_requests,
            record=True,
        )
    )
    cpu = _cpu_s(server.proc) - before
    results = [r for user in per_user for r in user]
    ok = _ok(results)
    first = [user[0] for user in per_user if user and user[0].error is None]
    return {
        "streams": args.burst_streams,
        "requests_each": args.burst_requests,
        "chunks_per_request": tokens,
        "itl_ms": itl,
        "chunks": sum(r.tokens for r in ok),
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "ttft_first_ms": summary_ms([r.ttft for r in first if r.ttft is not None], scale=1e3),
        "ttft_all_ms": summary_ms([r.ttft for r in ok if r.ttft is not None], scale=1e3),
        "gap_error_ms": gap_summary(gap_errors_ms(ok, itl)),
        **_failed(results),
    }


def measure_long(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Long answers at full speed: the cost per chunk once a stream runs."""
    streams, tokens = args.long_streams, args.long_tokens
    asyncio.run(run_streams(server.host, server.port, min(streams, 20), 50, 0, 0, False))
    before = _cpu_s(server.proc)
    wall, results = asyncio.run(run_streams(server.host, server.port, streams, tokens, 0, 0, False))
    cpu = _cpu_s(server.proc) - before
    ok = _ok(results)
    chunks = sum(r.tokens for r in ok)
    return {
        "streams": streams,
        "chunks_per_request": tokens,
        "chunks": chunks,
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "chunks_per_s": round(chunks / wall),
        "chunks_per_cpu_s": round(chunks / cpu) if cpu > 0 else None,
        "cpu_us_per_chunk": _per(cpu, chunks, 1e6),
        **_failed(results),
    }


def measure_timing(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    """Many paced streams, starts spread: the error of every inter-token gap."""
    streams, tokens, itl = args.timing_streams, args.timing_tokens, args.timing_itl_ms
    asyncio.run(run_streams(server.host, server.port, min(streams, 20), 20, 0, 0, False))
    before = _cpu_s(server.proc)
    wall, results = asyncio.run(
        run_streams(server.host, server.port, streams, tokens, itl, args.stagger_s, True)
    )
    cpu = _cpu_s(server.proc) - before
    ok = _ok(results)
    out: dict[str, Any] = {
        "streams": streams,
        "chunks_per_request": tokens,
        "itl_ms": itl,
        "chunks": sum(r.tokens for r in ok),
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "gap_error_ms": gap_summary(gap_errors_ms(ok, itl)),
        **_failed(results),
    }
    window = all_active_window(ok)
    if window is not None:
        out["all_active_s"] = round(window[1] - window[0], 3)
        out["all_active_gap_error_ms"] = gap_summary(gap_errors_ms(ok, itl, window))
    return out


MEASURES: dict[str, Callable[[Server, argparse.Namespace], dict[str, Any]]] = {
    "requests": measure_requests,
    "burst": measure_burst,
    "long": measure_long,
    "timing": measure_timing,
}


# -- the report ----------------------------------------------------------------------------------


def _median(values: list[Any]) -> Any:
    """Median over rounds of every number, nested dicts included."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if isinstance(present[0], dict):
        return {k: _median([v.get(k) for v in present]) for k in present[0]}
    numbers = [v for v in present if isinstance(v, int | float) and not isinstance(v, bool)]
    if numbers:
        return round(statistics.median(numbers), 3)
    return present[0]


def _get(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


# run -> (the figure compared, higher is better?)
RATIOS: dict[str, tuple[str, bool]] = {
    "requests": ("chunks_per_s", True),
    "burst": ("ttft_first_ms.p50", False),
    "long": ("chunks_per_cpu_s", True),
    "timing": ("all_active_gap_error_ms.p99", False),
}


def ratios(rounds: dict[str, list[dict[str, Any]]], run: str) -> dict[str, Any]:
    """mockllm's figure over each peer's, round by round (measured back to back)."""
    path, _ = RATIOS[run]
    out: dict[str, Any] = {}
    mine = rounds.get("mockllm", [])
    for peer, theirs in rounds.items():
        if peer == "mockllm":
            continue
        if peer.startswith(WORKERS_ROW):
            # the workers row over one worker (how well the mock scales), not the reverse
            out[f"{peer}/mockllm"] = _ratio(theirs, mine, path)
            if run == "requests":
                out[f"{peer}/mockllm"]["ceiling"] = workers_ceiling(theirs, mine, peer)
        else:
            out[f"mockllm/{peer}"] = _ratio(mine, theirs, path)
    return out


def workers_ceiling(
    workers: list[dict[str, Any]], one: list[dict[str, Any]], row: str
) -> float | None:
    """The most the workers row could show over one worker on this machine: every core busy
    serving at the workers' measured CPU per request plus the client's, over one worker that
    has a core to itself (median over rounds)."""
    count = int(row.removeprefix(WORKERS_ROW).split()[0])
    cores = len(_ALL_CPUS)
    bounds = []
    for w, o in zip(workers, one, strict=False):
        server, client, alone = (
            w.get("cpu_us_per_request"),
            w.get("client_cpu_us_per_request"),
            o.get("cpu_us_per_request"),
        )
        if server and client and alone:
            bounds.append(min(count, cores * alone / (server + client)))
    return round(statistics.median(bounds), 2) if bounds else None


def _ratio(mine: list[dict[str, Any]], theirs: list[dict[str, Any]], path: str) -> dict[str, Any]:
    per_round = []
    for a, b in zip(mine, theirs, strict=False):
        x, y = _get(a, path), _get(b, path)
        if x and y:
            per_round.append(round(x / y, 3))
    return {
        "figure": path,
        "median": round(statistics.median(per_round), 3) if per_round else None,
        "rounds": per_round,
    }


COLUMNS: dict[str, list[tuple[str, str]]] = {
    "requests": [
        ("chunks/s", "chunks_per_s"),
        ("req/s", "requests_per_s"),
        ("CPU %", "server_cpu_pct"),
        ("CPU us/req", "cpu_us_per_request"),
        ("CPU us/chunk", "cpu_us_per_chunk"),
        ("client us/req", "client_cpu_us_per_request"),
        ("TTFT p50 ms", "ttft_ms.p50"),
        ("TTFT p99 ms", "ttft_ms.p99"),
        ("failed", "failed"),
    ],
    "burst": [
        ("TTFT p50 ms", "ttft_first_ms.p50"),
        ("TTFT p99 ms", "ttft_first_ms.p99"),
        ("gap p50 ms", "gap_error_ms.p50"),
        ("gap p99 ms", "gap_error_ms.p99"),
        ("CPU s", "server_cpu_s"),
        ("failed", "failed"),
    ],
    "long": [
        ("chunks/s", "chunks_per_s"),
        ("chunks/CPU s", "chunks_per_cpu_s"),
        ("CPU us/chunk", "cpu_us_per_chunk"),
        ("failed", "failed"),
    ],
    "timing": [
        ("gap p50 ms", "gap_error_ms.p50"),
        ("gap p99 ms", "gap_error_ms.p99"),
        ("gap max ms", "gap_error_ms.max"),
        ("p99 all live", "all_active_gap_error_ms.p99"),
        ("CPU s", "server_cpu_s"),
        ("failed", "failed"),
    ],
}


def _title(run: str, args: argparse.Namespace) -> str:
    if run == "requests":
        return (
            f"requests: {args.users} users, requests back to back for {args.duration_s:g} s, "
            f"{args.request_tokens} content chunks each, zero delay"
        )
    if run == "burst":
        return (
            f"burst: {args.burst_streams} streams start at once, {args.burst_requests} requests "
            f"each, {args.burst_tokens} chunks {args.burst_itl_ms:g} ms apart (TTFT: first "
            "requests)"
        )
    if run == "long":
        return f"long: {args.long_streams} streams x {args.long_tokens} chunks, zero delay"
    return (
        f"timing: {args.timing_streams} streams x {args.timing_tokens} chunks "
        f"{args.timing_itl_ms:g} ms apart, starts over {args.stagger_s:g} s"
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{int(value):,}" if isinstance(value, int | float) else str(value)


def table(report: dict[str, Any], args: argparse.Namespace) -> str:
    """The medians of each run as a plain-text table, then its ratios."""
    lines = []
    for run, servers in report["runs"].items():
        columns = COLUMNS[run]
        lines.append("")
        lines.append(_title(run, args) + f" (medians of {args.rounds} rounds)")
        rows = [["server", *[label for label, _ in columns]]]
        for name, summary in servers.items():
            rows.append([name, *[_cell(_get(summary["median"], path)) for _, path in columns]])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append(
                "  ".join(
                    cell.ljust(w) if i == 0 else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                )
            )
        for pair, ratio in report["ratios"].get(run, {}).items():
            rounds = ", ".join(f"{r:g}" for r in ratio["rounds"])
            lines.append(f"  {pair} {ratio['figure']}: {_cell(ratio['median'])} ({rounds})")
            if ratio.get("ceiling"):
                lines.append(
                    f"  {pair} at most {ratio['ceiling']:g} here: every core busy at the CPU per "
                    "request measured for the workers and the client (which shares the cores)"
                )
    return "\n".join(lines)


# -- orchestration -------------------------------------------------------------------------------


def _start(name: str, cmd: list[str], cpu: int | None, env: dict[str, str] | None = None) -> Server:
    child = start_child(
        cmd, env=env, failure=lambda c: RuntimeError(f"{name} did not start: {c.text[-500:]}")
    )
    if cpu is not None:
        pin(child.proc.pid, cpu)
    address = urlsplit(child.url)
    assert address.hostname is not None and address.port is not None
    return Server(name, child.proc, address.hostname, address.port)


@contextmanager
def _affinity(cpus: frozenset[int]) -> Iterator[None]:
    """This process on ``cpus`` for a while (children started meanwhile inherit them)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _workloads(args: argparse.Namespace, runs: list[str]) -> list[tuple[int, float]]:
    """Every (chunks, itl_ms) a run or its warm-up asks for (aimock needs a fixture each)."""
    out = [(20, 0.0), (50, 0.0)]
    if "requests" in runs:
        out.append((args.request_tokens, 0.0))
    if "burst" in runs:
        out += [(args.burst_tokens, 0.0), (args.burst_tokens, args.burst_itl_ms)]
    if "long" in runs:
        out.append((args.long_tokens, 0.0))
    if "timing" in runs:
        out.append((args.timing_tokens, args.timing_itl_ms))
    return out


EXAMPLES = """\
Examples:
  streamharness bench mock                          # every run, 3 rounds, aimock when installed
  streamharness bench mock --rounds 1 --skip timing # a quicker look
  streamharness bench mock --compare-checkout ../main --json before-after.json
  streamharness bench mock --skip requests --skip burst --skip long --skip timing
                                                    # only the formats' encoders (seconds)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="streamharness bench mock",
        description="The mock's cost per request and per chunk, its TTFT and its timing, "
        "against a raw-asyncio writer and CopilotKit's aimock in the same run "
        "(docs/mockllm.md, 'Speed'). Also: python -m mockllm.bench.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--users", type=int, default=200, help="requests run: users (default 200)")
    add("--request-tokens", type=int, default=200, help="requests run: chunks per request (200)")
    add("--duration-s", type=float, default=8.0, help="requests run: seconds (default 8)")
    add("--burst-streams", type=int, default=200, help="burst run: streams (default 200)")
    add("--burst-requests", type=int, default=2, help="burst run: requests each (default 2)")
    add("--burst-tokens", type=int, default=50, help="burst run: chunks per request (50)")
    add("--burst-itl-ms", type=float, default=20.0, help="burst run: ms between chunks (20)")
    add("--long-streams", type=int, default=100, help="long run: streams (default 100)")
    add("--long-tokens", type=int, default=2000, help="long run: chunks per stream (2000)")
    add("--timing-streams", type=int, default=1000, help="timing run: streams (default 1000)")
    add("--timing-tokens", type=int, default=100, help="timing run: chunks per stream (100)")
    add("--timing-itl-ms", type=float, default=50.0, help="timing run: ms apart (50 = 20/s)")
    add("--stagger-s", type=float, default=1.0, help="timing run: spread starts over this")
    add(
        "--formats-tokens",
        type=int,
        default=100_000,
        help="formats run: tokens per answer of each format's encoder (100,000)",
    )
    add("--rounds", type=int, default=3, help="alternating rounds (default 3; medians)")
    add("--skip", choices=RUNS, action="append", default=[], help="leave a run out")
    add("--loop", choices=("asyncio", "uvloop"), default="uvloop", help="event loop (uvloop)")
    add(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="also measure the mock with --workers N (a row 'mockllm xN workers', unpinned, "
        "and its ratio over one worker)",
    )
    add("--no-pin", action="store_true", help="do not pin processes to cores")
    add("--json", metavar="FILE", help="also write the results as JSON")
    add(
        "--aimock-dir",
        type=Path,
        default=DEFAULT_AIMOCK_DIR,
        help=f"where aimock is npm-installed (default {DEFAULT_AIMOCK_DIR})",
    )
    add("--no-aimock", action="store_true", help="do not measure aimock")
    add("--no-baseline", action="store_true", help="do not measure the raw-asyncio writer")
    add(
        "--compare-starlette",
        action="store_true",
        help="also measure the same stream served by Starlette's StreamingResponse",
    )
    add(
        "--compare-checkout",
        metavar="DIR",
        action="append",
        default=[],
        help="also measure the mock of another checkout (e.g. a worktree of main)",
    )
    add("--serve", choices=("baseline", "starlette"), help=argparse.SUPPRESS)
    add("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.serve:
        main_serve(args.serve, args.port, args.loop)
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.workers == 1 or args.workers < 0:
        parser.error(f"--workers must be 2 or more (0: not measured), got {args.workers}")
    runs = [run for run in RUNS if run not in args.skip and run != "formats"]
    if "formats" not in args.skip:
        # In this process, before any server: the encoders alone (mockllm/bench/formats.py).
        report_formats = measure_formats(args.formats_tokens, max(args.rounds, 3))
        print(formats_table(report_formats, args.formats_tokens), flush=True)
        if not runs:
            if args.json:
                with open(args.json, "w", encoding="utf-8") as handle:
                    json.dump({"formats": report_formats}, handle, indent=2)
            return 0
    cpus = sorted(os.sched_getaffinity(0))
    pinned = not args.no_pin and len(cpus) >= 2
    server_cpu = cpus[0] if pinned else None
    if pinned:
        # The client gets the other cores so it never competes with the server it measures.
        os.sched_setaffinity(0, set(cpus[1:]))
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loop": args.loop,
            "pinned": pinned,
        },
    }
    me = [sys.executable, "-m", "mockllm.bench", "--loop", args.loop, "--serve"]
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "mockllm": ([sys.executable, "-m", "mockllm", "--port", "0", "--loop", args.loop], None),
    }
    if args.workers:
        mock = commands["mockllm"][0]
        commands[f"{WORKERS_ROW}{args.workers} workers"] = (
            [*mock, "--workers", str(args.workers)],
            None,
        )
    for directory in args.compare_checkout:
        path = Path(directory).resolve()
        commands[f"mockllm@{path.name}"] = (commands["mockllm"][0], {"PYTHONPATH": str(path)})
    if not args.no_baseline:
        commands["baseline"] = ([*me, "baseline"], None)
    if args.compare_starlette:
        commands["starlette"] = ([*me, "starlette"], None)
    with tempfile.TemporaryDirectory(prefix="mockllm-bench-") as tmp:
        if args.no_aimock:
            report["aimock"] = "not measured (--no-aimock)"
        else:
            fixtures = Path(tmp) / "aimock-fixtures.json"
            fixtures.write_text(json.dumps(aimock_fixtures(_workloads(args, runs))))
            command, about = aimock_command(args.aimock_dir, fixtures)
            report["aimock"] = about if command else f"not measured: {about}"
            if command:
                commands["aimock"] = (command, None)
        print(f"aimock: {report['aimock']}", file=sys.stderr, flush=True)
        results = _run(commands, runs, args, server_cpu)
    report["runs"] = {
        run: {name: {"median": _median(rs), "rounds": rs} for name, rs in per.items()}
        for run, per in results.items()
    }
    report["ratios"] = {run: ratios(per, run) for run, per in results.items()}
    if "formats" not in args.skip:
        report["formats"] = report_formats
    print(table(report, args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


def _run(
    commands: dict[str, tuple[list[str], dict[str, str] | None]],
    runs: list[str],
    args: argparse.Namespace,
    cpu: int | None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    # Every server stays up (idle when not measured), and each run measures them one after
    # the other, round after round: load from other processes then hits all of them alike.
    servers: list[Server] = []
    try:
        for name, (cmd, env) in commands.items():
            if name.startswith(WORKERS_ROW):
                # Workers are for more cores than one: every core, not the client's alone,
                # which a child (and the workers it forks) would otherwise inherit.
                with _affinity(_ALL_CPUS):
                    servers.append(_start(name, cmd, None, env))
            else:
                servers.append(_start(name, cmd, cpu, env))
        results: dict[str, dict[str, list[dict[str, Any]]]] = {
            run: {s.name: [] for s in servers} for run in runs
        }
        for number in range(1, args.rounds + 1):
            for run in runs:
                for server in servers:
                    print(f"round {number}: {run} on {server.name}", file=sys.stderr, flush=True)
                    results[run][server.name].append(MEASURES[run](server, args))
        return results
    finally:
        for server in servers:
            stop_process(server.proc)
