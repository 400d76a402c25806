"""``streamharness bench relay``: what a relay server costs on top of the provider.

Streams the same mock schedule (1) straight from mockllm (OpenAI SSE, ``OpenAIUser``), (2)
through a bare TCP hop (the same client through the embedded fault proxy with no toxic: one
more process and two more loopback legs, next to no work), (3) through the reference server
(WebSocket v1) and (4) through the naive server (tutorial protocol), at rising concurrency
(users with no think time = concurrent streams). Reported: TTFT and ITL p50/p99 and what each
path adds over direct, tokens/s, and the relay process's CPU (percent of one core, µs per
relayed token) and memory (RSS). The bare hop is the floor: what any relay in its own process
costs on this machine before it does any work, so "reference over the bare hop" is what the
reference server's own code adds. With ``--workers-row``, (5) the reference server as two
workers behind nginx round-robin sharing their streams in Redis (the tutorial's production
layout, ``StackSpec(server_workers=2, store="redis")``): its line says what that layout adds
over one worker, in the same run (nginx's hop included). Then:

- **throughput**: an instant schedule (no TTFT, no ITL) at the highest concurrency, so the
  token rate is what the chain can relay, not what the schedule allows;
- **idle memory**: ``--idle`` WebSocket connections opened and left idle; RSS growth divided
  by their number is the memory per idle connection.

Arrivals (``--arrival``): users with no think time and equal answers run in lockstep if they
all start at once, so hundreds of requests reach the relay within a few milliseconds and "added
TTFT" measures how a burst queues on the machine's cores, not the relay. ``stagger`` (the
default) starts the N users evenly over ``--ramp-s`` seconds (default: one answer's scheduled
length, at least 1 s, so their streams are spread over the answer's cycle) and gives each a
think time drawn from its seeded RNG (``--seed``) in [0, ``--jitter-ms``] between streams, so
they do not drift back into step. Each cell then runs ``--duration`` seconds more, and the TTFT
columns count only streams started after the ramp, when all N users stream at once (ITL and
tokens/s are over the whole cell). ``lockstep`` is the old behaviour: all users at once, no
think time, every stream counted.

Everything shares this machine's cores (mock, servers, Locust), so read absolute figures with
the machine line of the output; the comparison between columns is the point. One round of a
cell is noisy at the millisecond scale (the direct baseline's own TTFT p50 moves by about a
millisecond between identical runs on a shared 2-core machine): ``--repeat N`` runs each
scheduled cell N times, every path in turn; the summary line per path and concurrency then
gives the median and range of its added TTFT over the rounds (with one round, its value).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import websockets

from loadtests.bench.common import (
    Arrival,
    Cell,
    add_arrival_arguments,
    arrival_for,
    command_line,
    machine,
    markdown_table,
    ms,
    run_cell,
)
from loadtests.bench.common import done as _done
from loadtests.cli import parse_or_status
from loadtests.metrics import ERROR_OUTCOMES, ExactHistogram, LoadMetrics
from mockllm.cliargs import CommandParser
from reference_server.wire import PROTOCOL_V1
from scenarios.stack import Stack, StackSpec


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, got {text!r}") from None
    if not levels or any(n < 1 for n in levels):
        raise argparse.ArgumentTypeError("concurrency levels must be >= 1")
    return levels


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="streamharness bench relay",
        description=__doc__,
        epilog=(
            "Examples:\n"
            "  streamharness bench relay\n"
            "  streamharness bench relay --concurrency 10,100 --repeat 3\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--concurrency",
        type=_levels,
        default=[10, 50, 100],
        metavar="N,N,...",
        help="users of each cell, comma-separated (default 10,50,100)",
    )
    p.add_argument("--duration", type=float, default=8.0, help="seconds per cell")
    p.add_argument("--ttft-ms", type=float, default=100.0, help="mock TTFT (default 100)")
    p.add_argument("--itl-ms", type=float, default=20.0, help="mock inter-token gap (default 20)")
    p.add_argument("--tokens", type=int, default=50, help="tokens per answer (default 50)")
    p.add_argument("--throughput-tokens", type=int, default=500, help="answer length, instant")
    p.add_argument("--idle", type=int, default=200, help="idle connections for memory")
    p.add_argument("--processes", type=int, default=1, help="Locust processes")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of each scheduled cell (every path in turn); the summary lines give the "
        "median and range of each path's added TTFT over the rounds",
    )
    p.add_argument(
        "--bare-hop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also stream direct through the embedded fault proxy with no toxic, the floor of "
        "what one more process on the path costs (default: on; --no-bare-hop saves a cell per "
        "round)",
    )
    p.add_argument(
        "--workers-row",
        action="store_true",
        help="also stream through two reference workers behind nginx sharing Redis, and say "
        "what that adds over one worker (needs nginx and redis-server; default: off)",
    )
    add_arrival_arguments(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/relay"),
        metavar="DIR",
        help="where the table and the runs' files go (default bench-results/relay)",
    )
    return p


def steady_ttft(metrics: LoadMetrics, ramp_s: float) -> ExactHistogram:
    """TTFT of the streams started once the ramp was over (all of them without a ramp); like
    ``LoadMetrics.ttft``, failed streams' first tokens are not counted."""
    hist = ExactHistogram()
    streams = metrics.streams
    if not streams:
        return hist
    after = min(s.started_at for s in streams) + ramp_s
    hist.add_many(
        s.ttft_s
        for s in streams
        if s.ttft_s is not None and s.started_at >= after and s.outcome not in ERROR_OUTCOMES
    )
    return hist


@dataclass
class Measured:
    cell: Cell
    cpu_s: float
    rss_mb: float
    ttft: ExactHistogram  # the streams counted for TTFT (steady_ttft)
    ttft_streams: int


async def _measure(
    procs: Sequence[psutil.Process], host: str, user_class: str, users: int, prompt: str,
    args: argparse.Namespace, name: str, arrival: Arrival,
) -> Measured:  # fmt: skip
    def cpu() -> float:
        # Several processes (the workers): their CPU adds up, as their RSS below.
        return float(sum(t.user + t.system for t in (p.cpu_times() for p in procs)))

    before = cpu()
    cell = await asyncio.to_thread(
        run_cell, host=host, user_class=user_class, users=users,
        duration_s=arrival.run_time(args.duration), out_dir=args.out, name=name,
        processes=args.processes, extra=["--sh-prompt", prompt, *arrival.locust_args(users)],
    )  # fmt: skip
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    ttft = steady_ttft(cell.metrics, arrival.ramp_s)
    return Measured(cell, cpu() - before, rss, ttft, ttft.count)


async def _settled_rss(proc: psutil.Process, timeout_s: float = 3.0) -> int:
    """The server's RSS once it stops changing (it may still be setting up the last sockets):
    three equal readings 50 ms apart, or the last reading after ``timeout_s``."""
    readings = [proc.memory_info().rss]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if len(readings) >= 3 and readings[-1] == readings[-2] == readings[-3]:
            break
        await asyncio.sleep(0.05)  # RSS has no change notification: sample it
        readings.append(proc.memory_info().rss)
    return readings[-1]


async def _idle_memory(proc: psutil.Process, ws_url: str, n: int, v1: bool) -> float:
    """KiB of server RSS per idle WebSocket: the growth while a second batch of ``n`` opens.

    The first ``n`` pay the one-time costs (modules loaded on the first connection, the
    allocator's first arenas) and the second ``n`` only what one more connection costs: the
    marginal figure, on a server that has not served load yet (after load, freed memory would
    be reused and the growth would read low).
    """
    conns: list[Any] = []

    async def open_batch(start: int) -> None:
        for i in range(start, start + n):
            kwargs: dict[str, Any] = {"subprotocols": [PROTOCOL_V1]} if v1 else {}
            ws = await websockets.connect(f"{ws_url}/ws/chat/idle-{i}", **kwargs)
            conns.append(ws)
            if v1:
                await asyncio.wait_for(ws.recv(), 10)  # hello: the session exists

    try:
        await open_batch(0)
        base = await _settled_rss(proc)
        await open_batch(n)
        return (await _settled_rss(proc) - base) / 1024 / n
    finally:
        for ws in conns:
            with contextlib.suppress(Exception):
                await ws.close()


def _row(target: str, tag: str, users: int, m: Measured, direct: Measured | None) -> list[str]:
    mt = m.cell.metrics
    span = mt.time_span()
    tokens = sum(s.tokens for s in mt.streams)
    tps = tokens / (span[1] - span[0]) if span and span[1] > span[0] else 0.0
    wall = m.cell.wall_s or 1.0

    def hist_of(measured: Measured, name: str) -> ExactHistogram:
        return measured.ttft if name == "ttft" else getattr(measured.cell.metrics, name)

    def added(p: float, hist: str) -> str:
        if direct is None or target == "direct":
            return "-"
        a = hist_of(m, hist).interpolated_percentile(p)
        b = hist_of(direct, hist).interpolated_percentile(p)
        return "-" if a is None or b is None else f"{(a - b) * 1000:+.2f}"

    return [
        target + tag, str(users), str(_done(mt)), str(m.ttft_streams),
        f"{mt.error_rate() or 0:.0%}",
        ms(m.ttft.interpolated_percentile(50)), ms(m.ttft.interpolated_percentile(99)),
        added(50, "ttft"), added(99, "ttft"),
        ms(mt.itl.interpolated_percentile(50)), ms(mt.itl.interpolated_percentile(99)),
        added(50, "itl"), added(99, "itl"),
        f"{tps:,.0f}",
        "-" if target == "direct" else f"{100 * m.cpu_s / wall:.0f}%",
        "-" if target == "direct" or not tokens else f"{1e6 * m.cpu_s / tokens:.0f}",
        "-" if target == "direct" else f"{m.rss_mb:.0f}",
    ]  # fmt: skip


async def _run(args: argparse.Namespace) -> tuple[list[list[str]], list[str]]:
    prompt = f"[[mock ttft_ms={args.ttft_ms:g} itl_ms={args.itl_ms:g} tokens={args.tokens}]] relay"
    fast = f"[[mock ttft_ms=0 itl_ms=0 tokens={args.throughput_tokens}]] relay"
    rows: list[list[str]] = []
    notes: list[str] = []
    ref_spec = StackSpec(target="reference", mock_args=("--directives",), mock_proxy=args.bare_hop)
    naive_spec = StackSpec(target="naive", mock_args=("--directives",))
    async with contextlib.AsyncExitStack() as stacks:
        ref = await stacks.enter_async_context(Stack(ref_spec, log_dir=args.out / "reference-logs"))
        naive = await stacks.enter_async_context(Stack(naive_spec, log_dir=args.out / "naive-logs"))
        workers = None
        if args.workers_row:
            workers = await stacks.enter_async_context(
                Stack(WORKERS_SPEC, log_dir=args.out / "workers-logs")
            )
        assert ref.server is not None and ref.server.pid is not None
        assert naive.server is not None and naive.server.pid is not None
        ref_proc, naive_proc = psutil.Process(ref.server.pid), psutil.Process(naive.server.pid)
        targets: list[tuple[str, list[psutil.Process], str, str]] = [
            ("direct", [], ref.mock_url, "OpenAIUser")
        ]
        if args.bare_hop:
            assert ref.faultproxy is not None and ref.faultproxy.pid is not None
            assert ref.mock_proxy_url is not None
            hop = psutil.Process(ref.faultproxy.pid)
            targets.append(("bare hop", [hop], ref.mock_proxy_url, "OpenAIUser"))
        targets += [
            ("reference", [ref_proc], ref.server_url, "WsV1User"),
            ("naive", [naive_proc], naive.server_url, "TutorialUser"),
        ]
        if workers is not None:
            pids = [w.pid for w in workers.servers if w.pid is not None]
            procs = [psutil.Process(pid) for pid in pids]
            targets.append((WORKERS_PATH, procs, workers.client_http_url, "WsV1User"))
        # Idle memory first, on servers that have not served yet: after the load cells the
        # heap has room to spare and new connections barely move RSS.
        for label, server, url, v1 in (
            ("reference", ref_proc, ref.server_url, True),
            ("naive", naive_proc, naive.server_url, False),
        ):
            try:
                kib = await _idle_memory(server, "ws" + url[4:], args.idle, v1)
                notes.append(
                    f"{label}: {kib:.1f} KiB RSS per idle WebSocket (the second {args.idle} of "
                    f"{2 * args.idle} opened on a fresh server)"
                )
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                notes.append(f"{label}: idle-connection memory not measured ({exc})")
            print(notes[-1], flush=True)
        answer_s = (args.ttft_ms + (args.tokens - 1) * args.itl_ms) / 1000
        phases = [
            (c, prompt, "" if args.repeat == 1 else f" #{r + 1}", arrival_for(args, answer_s))
            for c in args.concurrency
            for r in range(args.repeat)
        ]
        phases.append((max(args.concurrency), fast, " (instant)", arrival_for(args, 0.0)))
        added: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for users, text, tag, arrival in phases:
            measured: dict[str, Measured] = {}
            for target, procs, host, user_class in targets:
                name = _cell_name(target, users, tag)
                m = await _measure(procs, host, user_class, users, text, args, name, arrival)
                measured[target] = m
                direct = measured.get("direct")
                rows.append(_row(target, tag, users, m, direct))
                print(" | ".join(rows[-1]), flush=True)
            if tag == " (instant)":
                continue
            for relay, base in _COMPARED:
                if relay in measured and base in measured:
                    pair = added_ttft(measured[relay].ttft, measured[base].ttft)
                    if pair is not None:
                        added.setdefault((_compared_name(relay, base), users), []).append(pair)
        notes[:0] = [repeat_summary(t, u, pairs, args.repeat) for (t, u), pairs in added.items()]
    return rows, notes


# --workers-row: the tutorial's production layout, nginx round-robin over two workers that
# share their streams in a private redis-server.
WORKERS_PATH = "2 workers + redis"
WORKERS_SPEC = StackSpec(
    target="reference", mock_args=("--directives",), server_workers=2, nginx=True, store="redis"
)

# Added TTFT summarised per concurrency: each path over direct, the reference server over
# the bare hop (what its own code adds beyond being one more process on the path), and the
# two workers over one (what nginx, the second worker and Redis add).
_COMPARED = [
    ("bare hop", "direct"),
    ("reference", "direct"),
    ("reference", "bare hop"),
    ("naive", "direct"),
    (WORKERS_PATH, "direct"),
    (WORKERS_PATH, "reference"),
]


def _compared_name(relay: str, base: str) -> str:
    if base == "reference":
        return f"{relay} over one worker"
    return relay if base == "direct" else f"{relay} over the {base}"


def _cell_name(target: str, users: int, tag: str) -> str:
    """File-name stem of a cell: ``reference-500``, ``reference-500-2``, ``direct-500-instant``,
    ``bare-hop-500``, ``2-workers-redis-500``."""
    suffix = tag.strip().strip("()").lstrip("#")
    stem = "-".join(target.replace("+", " ").split())
    return f"{stem}-{users}" + (f"-{suffix}" if suffix else "")


def added_ttft(relay: ExactHistogram, direct: ExactHistogram) -> tuple[float, float] | None:
    """What ``relay`` adds over ``direct`` at p50 and p99, in ms (None without samples)."""
    values = []
    for p in (50, 99):
        a, b = relay.interpolated_percentile(p), direct.interpolated_percentile(p)
        if a is None or b is None:
            return None
        values.append((a - b) * 1000)
    return values[0], values[1]


def repeat_summary(
    target: str, users: int, pairs: Sequence[tuple[float, float]], rounds: int
) -> str:
    """One line: the median and range of added TTFT p50 and p99 over the rounds.

    Single rounds on a shared machine move by milliseconds (the direct baseline's own p50 moves
    by about one between identical runs here), so a target is read against the median.
    """

    def spread(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:+.2f} ms"
        return (
            f"{statistics.median(values):+.2f} ms median ({min(values):+.2f} .. {max(values):+.2f})"
        )

    p50s = [a for a, _ in pairs]
    p99s = [b for _, b in pairs]
    if len(pairs) == rounds:
        counted = "in one round" if rounds == 1 else f"over {rounds} rounds"
    else:
        counted = f"over the {len(pairs)} of {rounds} rounds with TTFT samples"
    return f"{target} at {users}: added TTFT p50 {spread(p50s)}, p99 {spread(p99s)} {counted}"


def _arrival_line(args: argparse.Namespace) -> str:
    if args.arrival == "lockstep":
        return "lockstep (all users at once, no think time; TTFT over every stream)"
    ramp = "one answer's length, >= 1 s" if args.ramp_s is None else f"{args.ramp_s:g} s"
    return (
        f"stagger (users start evenly over {ramp}, then think 0-{args.jitter_ms:g} ms, seed "
        f"{args.seed}; TTFT over streams started after the ramp)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):
        return args
    if (
        args.duration <= 0
        or args.tokens < 2
        or args.idle < 1
        or args.processes < 1
        or args.repeat < 1
    ):
        parser.error("--duration > 0, --tokens >= 2, --idle >= 1, --processes >= 1, --repeat >= 1")
    if args.workers_row:
        from scenarios.stack import NginxUnavailable, RedisUnavailable
        from scenarios.stack.nginx import find_nginx
        from scenarios.stack.redis import find_redis

        try:
            find_nginx()
            find_redis()
        except (NginxUnavailable, RedisUnavailable) as exc:
            parser.error(f"--workers-row needs nginx and redis-server: {exc}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, notes = asyncio.run(_run(args))
    header = [
        "path", "concurrency", "streams done", "TTFT streams", "errors", "TTFT p50", "TTFT p99",
        "+TTFT p50", "+TTFT p99", "ITL p50", "ITL p99", "+ITL p50", "+ITL p99", "tokens/s",
        "server CPU", "CPU µs/token", "RSS MB",
    ]  # fmt: skip
    table = markdown_table(header, rows)
    command = command_line(argv)
    legend = "ms; '+' = added over direct at the same concurrency"
    if args.workers_row:
        legend += (
            f"; {WORKERS_PATH} = the reference server as two workers behind nginx "
            "round-robin, sharing their streams in redis-server"
        )
    if args.bare_hop:
        legend += (
            "; bare hop = the direct client through the embedded fault proxy, no toxic: one "
            "more process on the path, doing next to nothing"
        )
    text = (
        f"{table}\n\n({legend})\n"
        + "\n".join(notes)
        + f"\n\nschedule: TTFT {args.ttft_ms:g} ms, {args.tokens} tokens every {args.itl_ms:g} ms;"
        f" {args.duration:g} s per cell\narrival: {_arrival_line(args)}\nmachine: {machine()}\n"
        f"command: streamharness bench relay {command}\n"
    )
    (args.out / "relay.md").write_text(text)
    print(text)
    return 0
