"""``streamharness bench capacity``: how many frames/s one Locust process records precisely.

For each target rate the frame source (:mod:`loadtests.bench.framesource`) streams tokens to
``rate * --itl-ms`` WebSocket v1 users (or a fixed ``--users``, then ``itl = users / rate``),
so each user's stream paces like a fast model; each token carries its send time, so
the user's stamp minus it is the timing error of that token. We report the achieved frames/s,
the error percentiles, the generator's read delay (how long frames waited in the kernel before
Locust read them; with kernel receive stamps it is not part of the error until frames of one
socket queue behind each other), and the Locust processes' CPU per frame.

Users start staggered over one answer's length (``--arrival``, as in ``bench relay``): started
all at once, every stream's token is due in the same instant and the figures describe that
synchronized burst rather than the generator.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests.bench.common import (
    add_arrival_arguments,
    arrival_for,
    command_line,
    machine,
    markdown_table,
    ms,
    run_cell,
)
from loadtests.cli import parse_or_status
from mockllm.cliargs import CommandParser
from scenarios.stack.procs import start_process


def _rates(text: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"rates are comma-separated numbers, got {text!r}"
        ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="streamharness bench capacity",
        description=__doc__,
        epilog=(
            "Examples:\n"
            "  streamharness bench capacity\n"
            "  streamharness bench capacity --rates 10000,30000 --processes 2\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rates", type=_rates, default=[2000, 5000, 10000, 20000, 30000],
                   help="target frames/s per run, comma-separated")  # fmt: skip
    p.add_argument(
        "--itl-ms",
        type=float,
        default=10.0,
        help="gap between a stream's tokens; users = rate * ITL (default 10 ms: 100 tokens/s "
        "per stream, a fast model)",
    )
    p.add_argument("--users", type=int, default=None, help="fixed users (ITL = users / rate)")
    p.add_argument("--processes", type=int, default=1, help="Locust processes")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per rate")
    p.add_argument("--tokens", type=int, default=0, help="tokens per stream (0: auto)")
    add_arrival_arguments(p)
    p.add_argument(
        "--user-stamps",
        action="store_true",
        help="stamp frames when Locust reads them, not with the kernel's receive time "
        "(the generator's timing without loadtests.rxstamp, for comparison)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/capacity"),
        metavar="DIR",
        help="where the table and the runs' files go (default bench-results/capacity)",
    )
    return p


async def _run(args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for rate in args.rates:
        if args.users is not None:
            users, itl_ms = args.users, 1000.0 * args.users / rate
        else:
            users = max(1, round(rate * args.itl_ms / 1000))
            itl_ms = 1000.0 * users / rate
        # Streams short enough that most finish within the run (in-flight ones are not kept).
        tokens = args.tokens or max(20, int(args.duration / 5 / (itl_ms / 1000)))
        src = await start_process(
            "framesource",
            [sys.executable, "-m", "loadtests.bench.framesource", "--itl-ms", f"{itl_ms:.4f}",
             "--tokens", str(tokens), "--ttft-ms", "0"],
            log_dir=args.out,
        )  # fmt: skip
        arrival = arrival_for(args, tokens * itl_ms / 1000)
        extra = ["--sh-probe-lag", *arrival.locust_args(users)]
        if args.user_stamps:
            extra.append("--sh-user-stamps")
        try:
            assert src.url is not None
            cell = await asyncio.to_thread(
                run_cell,
                host=src.url,
                user_class="WsV1User",
                users=users,
                duration_s=arrival.run_time(args.duration),
                out_dir=args.out,
                name=f"rate{int(rate)}",
                processes=args.processes,
                extra=extra,
            )
        finally:
            await src.stop()
        m = cell.metrics
        span = m.time_span()
        frames = sum(s.tokens for s in m.streams)
        seconds = (span[1] - span[0]) if span else 0.0
        fps = frames / seconds if seconds else 0.0
        # CPU the Locust processes spent during the test itself (start-up excluded).
        cpu_us = 1e6 * m.generator_cpu_s / frames if frames else float("nan")
        share = m.generator_cpu_s / m.generator_wall_s if m.generator_wall_s else float("nan")
        rows.append([
            f"{rate:,.0f}", str(users), str(args.processes), f"{itl_ms:.2f}", f"{fps:,.0f}",
            ms(m.lag.interpolated_percentile(50)), ms(m.lag.interpolated_percentile(99)),
            ms(m.lag.max), ms(m.read_delay.interpolated_percentile(99)),
            ms(m.itl.interpolated_percentile(99)), f"{cpu_us:.1f}",
            f"{100 * share:.0f}%",
        ])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):
        return args
    if (
        (args.users is not None and args.users < 1)
        or args.itl_ms <= 0
        or args.processes < 1
        or args.duration <= 0
        or args.tokens < 0
    ):
        parser.error("--users/--processes >= 1, --itl-ms > 0, --duration > 0, --tokens >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(_run(args))
    header = [
        "target frames/s", "users", "processes", "ITL ms", "recorded frames/s", "error p50 ms",
        "error p99 ms", "error max ms", "read delay p99 ms", "measured ITL p99 ms",
        "Locust CPU µs/frame", "Locust CPU per process",
    ]  # fmt: skip
    table = markdown_table(header, rows)
    command = command_line(argv)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    text = (
        f"{table}\n\nerror = recorded stamp - source's send stamp (one CLOCK_MONOTONIC); "
        f"stamps: {'user (read time)' if args.user_stamps else 'kernel receive time'}; "
        f"load average after: {' '.join(load)}\nmachine: {machine()}\n"
        f"command: streamharness bench capacity {command}\n"
    )
    (args.out / "capacity.md").write_text(text)
    print(text)
    return 0
