"""``streamharness bench capacity``: how many frames/s one Locust process records precisely.

For each target rate the frame source (:mod:`loadtests.bench.framesource`) streams tokens to
``--users`` WebSocket v1 users with ``itl = users / rate``; each token carries its send time, so
the user's receive stamp minus it is the timing error of that token (``lag``). We report the
achieved frames/s, the lag percentiles and the Locust processes' CPU per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtests.bench.common import machine, ms, run_cell
from scenarios.procs import start_process


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
    p = argparse.ArgumentParser(prog="streamharness bench capacity", description=__doc__)
    p.add_argument("--rates", type=_rates, default=[2000, 5000, 10000, 20000, 30000],
                   help="target frames/s per run, comma-separated")  # fmt: skip
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--processes", type=int, default=1, help="Locust processes")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per rate")
    p.add_argument("--tokens", type=int, default=0, help="tokens per stream (0: auto)")
    p.add_argument("--out", type=Path, default=Path("bench-results/capacity"))
    return p


async def _run(args: argparse.Namespace) -> list[list[str]]:
    rows = []
    for rate in args.rates:
        itl_ms = 1000.0 * args.users / rate
        # Streams short enough that most finish within the run (in-flight ones are not kept).
        tokens = args.tokens or max(20, int(args.duration / 5 / (itl_ms / 1000)))
        src = await start_process(
            "framesource",
            [sys.executable, "-m", "loadtests.bench.framesource", "--itl-ms", f"{itl_ms:.4f}",
             "--tokens", str(tokens), "--ttft-ms", "0"],
            log_dir=args.out,
        )  # fmt: skip
        try:
            assert src.url is not None
            cell = await asyncio.to_thread(
                run_cell,
                host=src.url,
                user_class="WsV1User",
                users=args.users,
                duration_s=args.duration,
                out_dir=args.out,
                name=f"rate{int(rate)}",
                processes=args.processes,
                extra=["--sh-probe-lag"],
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
            f"{rate:,.0f}", str(args.users), str(args.processes), f"{itl_ms:.2f}", f"{fps:,.0f}",
            ms(m.lag.percentile(50)), ms(m.lag.percentile(99)), ms(m.lag.max),
            ms(m.itl.percentile(99)), f"{cpu_us:.1f}", f"{100 * share:.0f}%",
        ])  # fmt: skip
        print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.users < 1 or args.processes < 1 or args.duration <= 0 or args.tokens < 0:
        parser.error("--users/--processes >= 1, --duration > 0, --tokens >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(_run(args))
    header = [
        "target frames/s", "users", "processes", "ITL ms", "recorded frames/s", "lag p50 ms",
        "lag p99 ms", "lag max ms", "measured ITL p99 ms", "Locust CPU µs/frame",
        "Locust CPU per process",
    ]  # fmt: skip
    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r) + " |" for r in rows]
    )
    command = " ".join(argv if argv is not None else sys.argv[1:])
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    text = (
        f"{table}\n\nlag = receive stamp - send stamp (one CLOCK_MONOTONIC); "
        f"load average after: {' '.join(load)}\nmachine: {machine()}\n"
        f"command: streamharness bench capacity {command}\n"
    )
    (args.out / "capacity.md").write_text(text)
    print(text)
    return 0
