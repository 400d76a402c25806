"""Benchmark: does memory plateau when clients keep vanishing mid-stream?

    streamharness bench soak [--rounds 10] [--streams 2000]

Starts the reference stack with the embedded fault proxy on the upstream side
(client -> reference server -> fault proxy -> mockllm), then, ``--rounds`` times: opens
``--streams`` WebSocket clients, each asks for a long answer, waits until every one of them has
its first tokens (so all are open at once), and drops them all with a TCP reset. The round ends
when the server reports no live stream and the mock's ledger shows every upstream request
closed; the ledger is then cleared, as a test suite clears it between tests. After each round
the bench prints each process's resident memory (RSS); at the end, the growth from round 3 to
the last round (the plateau criterion: under 10 %), the peak per open stream, and the mock's
memory per ledger entry (RSS with a full round's entries kept, against the same after a clear).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from mockllm.app import MockApp, MockConfig
from mockllm.cliargs import CommandParser
from mockllm.client import MockAdmin
from scenarios.clients.aio import V1Connection
from scenarios.stack.launch import Stack, StackSpec

PROCESSES = ("server", "mock", "proxy")
# The round's streams open this many at a time: a thundering herd of 2,000 handshakes measures
# the accept queue, not memory.
OPEN_CONCURRENCY = 200
PLATEAU_FROM_ROUND = 3
PLATEAU_LIMIT = 0.10


@dataclass
class Round:
    number: int
    seconds: float
    peak_mb: dict[str, float]
    idle_mb: dict[str, float]


@dataclass
class SoakResult:
    baseline_mb: dict[str, float]
    rounds: list[Round] = field(default_factory=list)
    ledger_entry_kb: float | None = None

    def growth(self, name: str) -> float | None:
        """Relative RSS growth from round PLATEAU_FROM_ROUND to the last one, after the drops."""
        if len(self.rounds) <= PLATEAU_FROM_ROUND:
            return None
        first = self.rounds[PLATEAU_FROM_ROUND - 1].idle_mb[name]
        return self.rounds[-1].idle_mb[name] / first - 1


def _rss_mb(pids: dict[str, int]) -> dict[str, float]:
    return {name: psutil.Process(pid).memory_info().rss / 2**20 for name, pid in pids.items()}


def _prompt(n: int) -> list[dict[str, str]]:
    # Long enough to outlast the round (the drop ends it), and slow: 2,000 streams at one token
    # a second are 2,000 tokens/s through three Python processes on two cores, which leaves
    # room for the handshakes; faster pacing measures CPU starvation, not memory.
    return [{"role": "user", "content": f"[[mock tokens=600 itl_ms=1000]] soak stream {n}"}]


async def _open_one(url: str, n: int, gate: asyncio.Semaphore) -> V1Connection:
    async with gate:
        conn = await V1Connection.open(url, f"soak-{n}", hello_timeout_s=60, open_timeout_s=60)
        await conn.chat(_prompt(n), id="s")
    if not await conn.wait_tokens("s", 2, timeout_s=120):
        record = conn.recorder.records["s"]
        raise RuntimeError(
            f"stream {n} ended before its second token: {record.outcome} "
            f"{record.error_code or ''} {record.error_message or ''}"
        )
    return conn


async def _quiet(
    http: httpx.AsyncClient, admin: MockAdmin, expected: int, timeout_s: float
) -> None:
    """Until the server has no live stream and the mock saw every upstream request close."""
    deadline = time.monotonic() + timeout_s
    closed = 0
    while True:
        stats = (await http.get("/stats")).json()
        if stats["live_streams"] == 0 and stats["active_generations"] == 0:
            entries = await asyncio.to_thread(admin.requests)
            closed = sum(1 for e in entries if e.get("ended_at") is not None)
            if closed >= expected:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"not quiet after {timeout_s:g} s: server stats {stats}, "
                f"{closed} of {expected} upstream requests closed"
            )
        await asyncio.sleep(0.5)  # polling an HTTP API: there is no event to wait on


async def soak(rounds: int, streams: int) -> SoakResult:
    # Every stream of a round is open at once: the server's upstream pool (1,000 by default)
    # must hold them all, or the last ones wait for a slot and fail.
    pool = str(max(1000, 2 * streams))
    spec = StackSpec(
        upstream_proxy=True,
        mock_args=("--directives",),
        server_env={"STREAMHARNESS_SERVER_UPSTREAM_MAX_CONNECTIONS": pool},
    )
    async with Stack(spec) as stack:
        pids = {
            name: proc.pid
            for name, proc in (
                ("server", stack.server),
                ("mock", stack.mock),
                ("proxy", stack.faultproxy),
            )
            if proc is not None and proc.pid is not None
        }
        admin = MockAdmin(stack.mock_url)
        result = SoakResult(baseline_mb=_rss_mb(pids))
        print(_line("before", result.baseline_mb), flush=True)
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        async with httpx.AsyncClient(base_url=stack.server_url, timeout=30) as http:
            for number in range(1, rounds + 1):
                started = time.monotonic()
                conns = await asyncio.gather(
                    *(_open_one(stack.client_ws_url, n, gate) for n in range(streams))
                )
                peak = _rss_mb(pids)
                for conn in conns:
                    await conn.drop()
                del conns
                await _quiet(http, admin, streams, timeout_s=120)
                await asyncio.to_thread(admin.clear)
                idle = _rss_mb(pids)
                result.rounds.append(Round(number, time.monotonic() - started, peak, idle))
                print(
                    _line(f"round {number}/{rounds}", idle, peak, time.monotonic() - started),
                    flush=True,
                )
        admin.close()
    result.ledger_entry_kb = await ledger_entry_kb()
    return result


async def ledger_entry_kb(requests: int = 2000) -> float:
    """What the mock's ledger keeps per finished request, in KB: a chat like the soak's (one
    short user message, with an API key), answered through the mock's own ASGI app in this
    process and measured with tracemalloc. RSS cannot say it: memory freed by a clear stays
    with the process for reuse, so a clear does not lower RSS."""
    app = MockApp(MockConfig(directives=True, ledger_size=requests + 1))

    async def one(n: int) -> None:
        raw = json.dumps(
            {
                "model": "gpt-4o-mini",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"[[mock tokens=2]] soak stream {n}"}],
            }
        ).encode()
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/chat/completions",
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                (b"authorization", b"Bearer sk-soak-0123456789abcdef"),
            ],
        }
        inbox = [{"type": "http.request", "body": raw, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop()
            await asyncio.Event().wait()  # the client stays until the answer is over
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            pass

        await app(scope, receive, send)

    await one(-1)  # caches and lazy imports are not the ledger's
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range(requests):
        await one(n)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    if len(app.ledger.query()) != requests + 1:
        raise RuntimeError("the ledger did not keep every request")
    return (after - before) / requests / 1024


def _line(
    label: str, idle: dict[str, float], peak: dict[str, float] | None = None, s: float = 0
) -> str:
    parts = []
    for name in PROCESSES:
        part = f"{name} {idle[name]:7.1f} MB"
        if peak is not None:
            part += f" (peak {peak[name]:7.1f})"
        parts.append(part)
    timing = f" in {s:5.1f} s" if s else ""
    return f"{label:>12}: " + ", ".join(parts) + timing


def summary(result: SoakResult, streams: int) -> tuple[list[str], bool]:
    """The closing lines, and whether every process plateaued."""
    lines = []
    ok = True
    for name in PROCESSES:
        growth = result.growth(name)
        peak = max(r.peak_mb[name] for r in result.rounds)
        per_stream_kb = (peak - result.baseline_mb[name]) * 1024 / streams
        verdict = ""
        if growth is not None:
            plateau = growth < PLATEAU_LIMIT
            ok = ok and plateau
            verdict = (
                f"; round {PLATEAU_FROM_ROUND} -> {len(result.rounds)}: {growth * 100:+.1f} % "
                f"({'plateau' if plateau else 'STILL GROWING'}, limit {PLATEAU_LIMIT * 100:.0f} %)"
            )
        lines.append(f"{name}: {per_stream_kb:.1f} KB per open stream at the peak{verdict}")
    if result.ledger_entry_kb is not None:
        lines.append(
            f"mock: {result.ledger_entry_kb:.1f} KB per ledger entry (tracemalloc, a short chat "
            "request; kept until cleared or pushed out by --ledger-size)"
        )
    return lines, ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness bench soak",
        description="Memory across rounds of streams dropped mid-answer, for the reference "
        "server, the mock and the fault proxy (docs/limits.md, 'Memory').",
        epilog=(
            "Examples:\n"
            "  streamharness bench soak\n"
            "  streamharness bench soak --rounds 3 --streams 500\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default: 10)")
    parser.add_argument(
        "--streams", type=int, default=2000, help="streams opened and dropped per round (2000)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.streams < 1:
        parser.error("--rounds and --streams must be at least 1")
    result = asyncio.run(soak(args.rounds, args.streams))
    lines, ok = summary(result, args.streams)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
