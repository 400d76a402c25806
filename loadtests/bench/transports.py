"""``streamharness bench transports``: one generation, four ways to deliver it.

The same mock schedule (``[[mock ttft_ms=.. itl_ms=.. tokens=..]]`` in the prompt) is streamed
through the reference server over WebSocket v1, SSE, blocking POST and polling (1 s), first on
a clean loopback (client -> server directly), then with ``--latency-ms`` of added latency on
every chunk from the server to the client (a Toxiproxy ``latency`` toxic on the downstream
proxy, direction ``downstream``). Each cell is a short headless Locust run with exact metrics;
the result is a markdown table of TTFT and E2E percentiles per transport.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from loadtests.bench.common import command_line, machine, markdown_table, ms, run_cell
from loadtests.bench.common import done as _done
from loadtests.cli import parse_or_status
from mockllm.cliargs import CommandParser
from scenarios.stack import Stack, StackSpec

TRANSPORTS = {
    "ws": "WsV1User",
    "sse": "SseUser",
    "blocking": "BlockingUser",
    "polling": "PollingUser",
}


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="streamharness bench transports",
        description=__doc__,
        epilog=(
            "Examples:\n"
            "  streamharness bench transports\n"
            "  streamharness bench transports --transports ws,sse --users 8 --latency-ms 50\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--users", type=int, default=4, help="concurrent users per cell")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per cell")
    p.add_argument("--ttft-ms", type=float, default=390.0, help="mock TTFT (GPT-4o median)")
    p.add_argument("--itl-ms", type=float, default=12.3, help="mock inter-token latency")
    p.add_argument("--tokens", type=int, default=64, help="tokens per answer")
    p.add_argument("--poll-interval", type=float, default=1.0, help="polling period, s")
    p.add_argument("--latency-ms", type=float, default=100.0, help="injected latency")
    p.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated subset")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results/transports"),
        metavar="DIR",
        help="where the table and the runs' files go (default bench-results/transports)",
    )
    return p


async def _add_latency(stack: Stack, latency_ms: float) -> None:
    assert stack.proxy_api_url and stack.downstream_proxy_name
    toxic = {
        "name": "bench_latency",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": int(latency_ms), "jitter": 0},
    }
    async with httpx.AsyncClient(base_url=stack.proxy_api_url, timeout=10) as client:
        response = await client.post(f"/proxies/{stack.downstream_proxy_name}/toxics", json=toxic)
        response.raise_for_status()


async def _run(args: argparse.Namespace, transports: list[str]) -> list[list[str]]:
    spec = StackSpec(target="reference", downstream_proxy=True, mock_args=("--directives",))
    prompt = (
        f"[[mock ttft_ms={args.ttft_ms:g} itl_ms={args.itl_ms:g} tokens={args.tokens}]] "
        "Compare the transports."
    )
    rows: list[list[str]] = []
    async with Stack(spec, log_dir=args.out / "stack-logs") as stack:
        conditions = [("loopback", stack.server_url), (f"+{args.latency_ms:g} ms", "")]
        for condition, host in conditions:
            if not host:
                await _add_latency(stack, args.latency_ms)
                host = stack.client_http_url
            for transport in transports:
                cell = await asyncio.to_thread(
                    run_cell,
                    host=host,
                    user_class=TRANSPORTS[transport],
                    users=args.users,
                    duration_s=args.duration,
                    out_dir=args.out,
                    name=f"{transport}-{'clean' if condition == 'loopback' else 'latency'}",
                    extra=["--sh-prompt", prompt, "--sh-poll-interval", f"{args.poll_interval:g}"],
                )
                m = cell.metrics
                label = (
                    f"polling ({args.poll_interval:g} s)" if transport == "polling" else transport
                )
                rows.append([
                    label, condition, str(_done(m)), f"{m.error_rate() or 0:.0%}",
                    *(ms(m.ttft.interpolated_percentile(p)) for p in (50, 95, 99)),
                    *(ms(m.e2e.interpolated_percentile(p)) for p in (50, 95, 99)),
                ])  # fmt: skip
                print(" | ".join(rows[-1]), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):
        return args
    transports = [t.strip() for t in args.transports.split(",") if t.strip()]
    unknown = [t for t in transports if t not in TRANSPORTS]
    if unknown or not transports:
        parser.print_usage(sys.stderr)
        print(f"error: unknown transport(s) {unknown}; choose from {', '.join(TRANSPORTS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.users < 1 or args.duration <= 0 or args.tokens < 1 or args.latency_ms < 0:
        parser.error("--users >= 1, --duration > 0, --tokens >= 1, --latency-ms >= 0")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = asyncio.run(_run(args, transports))
    header = [
        "transport", "network", "streams done", "errors", "TTFT p50 ms", "TTFT p95 ms",
        "TTFT p99 ms", "E2E p50 ms", "E2E p95 ms", "E2E p99 ms",
    ]  # fmt: skip
    table = markdown_table(header, rows)
    command = command_line(argv)
    text = (
        f"{table}\n\nmock schedule: TTFT {args.ttft_ms:g} ms, {args.tokens} tokens every "
        f"{args.itl_ms:g} ms; {args.users} users, {args.duration:g} s per cell\n"
        f"machine: {machine()}\ncommand: streamharness bench transports {command}\n"
    )
    (args.out / "transports.md").write_text(text)
    print(text)
    return 0
