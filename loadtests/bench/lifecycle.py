"""Benchmark: how fast a cancel or a dropped socket reaches the provider, and one socket's rate.

    streamharness bench lifecycle [--runs 30]

Starts mockllm and the reference server on free ports (resume grace 0, so a dropped socket ends
its stream at once), then, ``--runs`` times: a ``cancel`` sent mid-stream, and an abrupt drop;
each timed from the client's send to the moment the mock's ledger says the upstream request was
closed (``client_disconnected``). Last, one WebSocket relays a 20,000-token instant answer.
Prints median, p95 (nearest rank) and max; the figures of docs/reference_server.md, "Measured".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from mockllm.cliargs import CommandParser
from mockllm.client import MockAdmin
from mockllm.percentiles import percentile
from scenarios.clients.aio import V1Connection
from scenarios.stack.procs import ManagedProcess, start_process

THROUGHPUT_TOKENS = 20_000


def _prompt(text: str, **directive: object) -> list[dict[str, str]]:
    parts = " ".join(f"{k}={v}" for k, v in directive.items())
    return [{"role": "user", "content": f"[[mock {parts}]] {text}"}]


def _summary(name: str, seconds: list[float]) -> str:
    return (
        f"{name}: n={len(seconds)} median={statistics.median(seconds) * 1000:.1f} ms "
        f"p95={percentile(seconds, 95) * 1000:.1f} ms max={max(seconds) * 1000:.1f} ms"
    )


async def _until_closed_upstream(admin: MockAdmin, count: int) -> float:
    """When the ``count``-th upstream request was closed by the server (epoch seconds)."""
    entries = await asyncio.to_thread(admin.wait, count, outcome="client_disconnected")
    ended: float = entries[-1]["ended_at"]
    return ended


async def _one_run(server_url: str, admin: MockAdmin, n: int) -> tuple[float, float]:
    admin.clear()
    conn = await V1Connection.open(server_url, f"bench-{n}")
    try:
        await conn.chat(_prompt(f"cancel {n}", tokens=1000, itl_ms=10), id="a")
        await conn.wait_tokens("a", 3, timeout_s=10)
        sent = time.time()
        await conn.cancel("a")
        cancel = await _until_closed_upstream(admin, 1) - sent
        await conn.chat(_prompt(f"drop {n}", tokens=1000, itl_ms=10), id="b")
        await conn.wait_tokens("b", 3, timeout_s=10)
        sent = time.time()
        await conn.drop()
        drop = await _until_closed_upstream(admin, 2) - sent
    finally:
        await conn.close()
    return cancel, drop


async def _throughput(server_url: str) -> float:
    conn = await V1Connection.open(server_url, "bench-throughput")
    try:
        started = time.perf_counter()
        await conn.chat(_prompt("throughput", tokens=THROUGHPUT_TOKENS), id="t")
        record = await conn.wait("t", timeout_s=120)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    if len(record.tokens) != THROUGHPUT_TOKENS:
        raise RuntimeError(f"got {len(record.tokens)} of {THROUGHPUT_TOKENS} tokens")
    return elapsed


async def measure(runs: int) -> None:
    logs = Path(tempfile.mkdtemp(prefix="streamharness-lifecycle-"))
    py = sys.executable
    procs: list[ManagedProcess] = []
    try:
        mock = await start_process(
            "mockllm", [py, "-m", "mockllm", "--port", "0", "--directives"], log_dir=logs
        )
        procs.append(mock)
        assert mock.url is not None
        env = {**os.environ, "STREAMHARNESS_SERVER_RESUME_GRACE_S": "0"}
        server_argv = [py, "-m", "reference_server", "--port", "0", "--upstream", f"{mock.url}/v1"]
        server = await start_process("server", server_argv, log_dir=logs, env=env)
        procs.append(server)
        assert server.url is not None
        admin = MockAdmin(mock.url)
        try:
            cancel, drop = [], []
            for n in range(runs):
                c, d = await _one_run(server.url, admin, n)
                cancel.append(c)
                drop.append(d)
                print(f"\r{n + 1}/{runs} runs", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            print(_summary("cancel -> upstream closed (mock ledger)", cancel))
            print(_summary("abrupt drop, grace 0 -> upstream closed", drop))
        finally:
            admin.close()
        elapsed = await _throughput(server.url)
        print(
            f"one WebSocket, instant mock: {THROUGHPUT_TOKENS} tokens in {elapsed:.2f} s "
            f"= {THROUGHPUT_TOKENS / elapsed:,.0f} tokens/s"
        )
        async with httpx.AsyncClient(base_url=server.url) as http:
            print("server /stats after:", (await http.get("/stats")).json())
    finally:
        for proc in reversed(procs):
            await proc.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness bench lifecycle",
        description="Cancel and drop latency to the provider, and one socket's relay rate, "
        "on the reference server (docs/reference_server.md, 'Measured').",
        epilog=(
            "Examples:\n"
            "  streamharness bench lifecycle\n"
            "  streamharness bench lifecycle --runs 100\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=30, help="cancel/drop pairs (default: 30)")
    args = parser.parse_args(argv)
    asyncio.run(measure(args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
