"""Benchmark of the fault proxy: ``python -m scenarios.faultproxy.bench``.

Three processes on 127.0.0.1, so the harness is not what gets measured: the echo upstream,
the proxy (``python -m scenarios.faultproxy``, on uvloop when installed; ``--proxy-loop``),
and this one, the measuring client. Measured:

1. bulk throughput through a proxy with no toxics vs a direct connection (MB/s);
2. token-sized messages (24 B, one write each, streamed by the upstream) per second;
3. added round-trip latency with no toxics (1-byte ping-pong, p50/p99 vs direct);
4. latency-toxic accuracy: 100 concurrent connections ping-ponging 1 byte through
   ``latency 50 ms``. Round trips are timed with ``perf_counter_ns`` in the protocol callbacks,
   with the client's garbage collector frozen for the window. Per percentile,
   error = toxic round trip - 50 ms - the round trip of the same 100 connections through the
   same proxy without the toxic (at the same packet rate), measured right before in the same
   run; plus the proxy's own view (``faultproxy_delivery_lateness_seconds``: due time to
   write, per bucket).

``--latency-only`` runs just 4 (about 8 s). Percentiles are nearest-rank
(:mod:`mockllm.percentiles`), the definition every bench and check uses.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any, Final, cast
from urllib.parse import urlsplit

from mockllm.childproc import start_child
from mockllm.cliargs import CommandParser
from mockllm.percentiles import percentile
from scenarios.faultproxy.client import ServerChoice, ToxiproxyClient, start_server

__all__ = ["main"]

MESSAGE = b"x" * 23 + b"\n"


class _Upstream(asyncio.Protocol):
    """Echo, except: a line ``S <n>\\n`` first streams n messages, ``B\\n`` sinks bytes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.mode = ""
        self.sunk = 0
        self.target = 0

    def data_received(self, data: bytes) -> None:
        if self.mode == "sink":
            self.sunk += len(data)
            if self.sunk >= self.target:
                self.transport.write(b"k")
            return
        if self.mode == "" and data.startswith(b"S "):
            count = int(data.split()[1])
            self.mode = "stream"
            asyncio.get_running_loop().create_task(self._stream(count))
            return
        if self.mode == "" and data.startswith(b"B "):
            head, _, rest = data.partition(b"\n")
            self.mode = "sink"
            self.target = int(head.split()[1])
            self.data_received(rest)
            return
        self.mode = "echo"
        self.transport.write(data)

    async def _stream(self, count: int) -> None:
        for i in range(count):
            self.transport.write(MESSAGE)
            if i % 64 == 63:
                await asyncio.sleep(0)  # let the loop flush: separate segments, like tokens


async def _serve_upstream() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"upstream listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


# -- measurements -------------------------------------------------------------------------------


async def _bulk_mb_s(port: int, total: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    block = b"\0" * 65536
    start = time.perf_counter()
    writer.write(f"B {total}\n".encode())
    sent = 0
    while sent < total:
        writer.write(block)
        sent += len(block)
        await writer.drain()
    await reader.readexactly(1)
    elapsed = time.perf_counter() - start
    writer.close()
    return total / elapsed / 1e6


async def _messages_per_s(port: int, count: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.perf_counter()
    writer.write(f"S {count}\n".encode())
    await reader.readexactly(len(MESSAGE) * count)
    elapsed = time.perf_counter() - start
    writer.close()
    return count / elapsed


async def _rtts_ms(port: int, rounds: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        writer.write(b"p")
        await reader.readexactly(1)
        out.append((time.perf_counter() - start) * 1000)
    writer.close()
    return out


class _Pinger(asyncio.Protocol):
    """One measuring connection: 1-byte ping, 1-byte pong, timed at the socket callbacks.

    A protocol rather than a stream: the receive time is taken in ``data_received`` itself,
    not after a task has been woken, and the next ping leaves from the same callback.
    """

    def __init__(self, rounds: int, pause_s: float, done: asyncio.Future[None]) -> None:
        self.rounds = rounds
        self.pause_s = pause_s  # baseline: idle between pings so the packet rate matches
        self.done = done
        self.rtts_ns: list[int] = []
        self.sent_ns = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def ping(self) -> None:
        assert self.transport is not None
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(b"p")

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        self.rtts_ns.append(now - self.sent_ns)
        if len(self.rtts_ns) >= self.rounds:
            if not self.done.done():
                self.done.set_result(None)
        elif self.pause_s:
            asyncio.get_running_loop().call_later(self.pause_s, self.ping)
        else:
            self.ping()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"measuring connection lost: {exc}"))


async def _concurrent_rtts_ms(
    port: int, conns: int, rounds: int, latency_ms: int, pause: bool
) -> list[float]:
    """``conns`` connections ping-ponging; all their round trips (ms).

    With ``pause`` each connection idles ``latency_ms`` between pings: the no-toxic baseline
    then sees the same packet rate as the run through the latency toxic.
    """
    loop = asyncio.get_running_loop()
    rng = random.Random(0)
    pingers: list[_Pinger] = []
    for _ in range(conns):
        done: asyncio.Future[None] = loop.create_future()
        pause_s = latency_ms / 1000 if pause else 0.0
        _, pinger = await loop.create_connection(
            functools.partial(_Pinger, rounds, pause_s, done), "127.0.0.1", port
        )
        pingers.append(pinger)
    # Warm-up round trip per connection (upstream connect, first toxic draw), not measured.
    for pinger in pingers:
        pinger.rounds += 1
    # The client must not collect garbage in the middle of the window: freeze what exists,
    # and do not collect at all until the window ends.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for pinger in pingers:
            # Spread the connections over the latency window, as independent users would be.
            loop.call_later(rng.uniform(0, latency_ms / 1000), pinger.ping)
        await asyncio.wait_for(
            asyncio.gather(*(p.done for p in pingers)),
            timeout=30 + rounds * latency_ms / 1000 * 4,
        )
    finally:
        gc.enable()
        gc.unfreeze()
        for pinger in pingers:
            if pinger.transport is not None:
                pinger.transport.close()
    return [ns / 1e6 for pinger in pingers for ns in pinger.rtts_ns[1:]]


PERCENTILES: Final = (50, 90, 99, 99.9)


def _latency_run(base: list[float], toxic: list[float], latency_ms: int) -> dict[str, Any]:
    """Per (nearest-rank) percentile: error = toxic RTT - configured latency - baseline RTT."""
    out: dict[str, Any] = {"samples": len(toxic)}
    base_p50 = percentile(base, 50)
    for q in PERCENTILES:
        name = f"p{q:g}"
        b, t = percentile(base, q), percentile(toxic, q)
        out[name] = {
            "base": round(b, 3),
            "toxic": round(t, 3),
            "error": round(t - latency_ms - b, 3),
            # Less sensitive to a noisy baseline tail: against the baseline's median.
            "error_vs_base_p50": round(t - latency_ms - base_p50, 3),
        }
    out["max_error"] = round(max(toxic) - latency_ms - base_p50, 3)
    out["min_error"] = round(min(toxic) - latency_ms - base_p50, 3)
    return out


async def _run(
    api: ToxiproxyClient, upstream: int, quick: bool, latency_only: bool
) -> dict[str, Any]:
    api.delete_proxy("bench") if "bench" in api.proxies() else None
    proxy = api.create_proxy("bench", upstream=f"127.0.0.1:{upstream}")
    result: dict[str, Any] = {}
    if not latency_only:
        result.update(await _speed(proxy.port, upstream, quick))
    latency_ms = 50
    conns = 100
    rounds = 10 if quick else 20
    runs = []
    for _ in range(1 if quick else 3):
        # Repeated, baseline and toxic back to back: on a shared machine the neighbours change
        # from one minute to the next, and one run's tail says more about them than about us.
        base = await _concurrent_rtts_ms(proxy.port, conns, rounds, latency_ms, pause=True)
        api.add_toxic("bench", "latency", attributes={"latency": latency_ms}, name="lat")
        scrape = api.metrics()
        before, gc_before = _lateness_buckets(scrape), _gc_collections(scrape)
        toxic = await _concurrent_rtts_ms(proxy.port, conns, rounds, latency_ms, pause=False)
        scrape = api.metrics()
        after, gc_after = _lateness_buckets(scrape), _gc_collections(scrape)
        api.remove_toxic("bench", "lat")
        run = _latency_run(base, toxic, latency_ms)
        if after:
            run["proxy_side_lateness"] = _lateness_share(before, after)
        if gc_after:
            # Per generation; a generation-2 collection of an unfrozen heap stalls ~10 ms.
            run["proxy_gc_collections"] = [a - b for a, b in zip(gc_after, gc_before, strict=True)]
        run["load_average_1m"] = round(os.getloadavg()[0], 2)
        runs.append(run)
    result[f"latency_toxic_{latency_ms}ms_{conns}_conns"] = runs
    result["latency_toxic_error_ms_range"] = {
        name: [min(r[name]["error"] for r in runs), max(r[name]["error"] for r in runs)]
        for name in (f"p{q:g}" for q in PERCENTILES)
    }
    api.delete_proxy("bench")
    return result


async def _speed(proxy_port: int, upstream: int, quick: bool) -> dict[str, Any]:
    total = (50 if quick else 300) * 1_000_000
    count = 50_000 if quick else 300_000
    rounds = 500 if quick else 3000
    result: dict[str, Any] = {}
    direct_mb = statistics.median([await _bulk_mb_s(upstream, total) for _ in range(3)])
    proxy_mb = statistics.median([await _bulk_mb_s(proxy_port, total) for _ in range(3)])
    result["throughput_mb_s"] = {"direct": round(direct_mb, 1), "proxy": round(proxy_mb, 1)}
    direct_msg = statistics.median([await _messages_per_s(upstream, count) for _ in range(3)])
    proxy_msg = statistics.median([await _messages_per_s(proxy_port, count) for _ in range(3)])
    result["messages_per_s_24B"] = {"direct": round(direct_msg), "proxy": round(proxy_msg)}
    direct_rtt = await _rtts_ms(upstream, rounds)
    proxy_rtt = await _rtts_ms(proxy_port, rounds)
    d50, p50 = percentile(direct_rtt, 50), percentile(proxy_rtt, 50)
    result["rtt_ms"] = {
        "direct_p50": round(d50, 4),
        "direct_p99": round(percentile(direct_rtt, 99), 4),
        "proxy_p50": round(p50, 4),
        "proxy_p99": round(percentile(proxy_rtt, 99), 4),
        "added_p50": round(p50 - d50, 4),
    }
    return result


def _lateness_share(
    before: list[tuple[str, int]], after: list[tuple[str, int]]
) -> dict[str, float]:
    """Share of this run's deliveries per cumulative lateness bucket (from two scrapes)."""
    old = dict(before)
    counts = [(le, n - old.get(le, 0)) for le, n in after]
    total = counts[-1][1]
    if not total:
        return {}
    return {"deliveries": total, **{f"le_{le}_s": round(n / total, 4) for le, n in counts[:-1]}}


def _gc_collections(metrics: str) -> list[int]:
    return [
        int(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("python_gc_collections_total{")
    ]


def _lateness_buckets(metrics: str) -> list[tuple[str, int]]:
    """Cumulative buckets of the embedded server's delivery lateness histogram."""
    out = []
    for line in metrics.splitlines():
        if line.startswith("faultproxy_delivery_lateness_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out.append((le, int(line.rsplit(" ", 1)[1])))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="python -m scenarios.faultproxy.bench",
        epilog=(
            "Examples:\n"
            "  streamharness bench proxy\n"
            "  streamharness bench proxy --quick\n"
            "  streamharness bench proxy --toxiproxy-url http://127.0.0.1:8474   # real Toxiproxy\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller runs (a few seconds)")
    parser.add_argument("--toxiproxy-url", help="measure this server instead of the embedded one")
    parser.add_argument(
        "--latency-only", action="store_true", help="only the latency-toxic accuracy runs"
    )
    parser.add_argument(
        "--proxy-loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="event loop of the embedded proxy process (its --loop)",
    )
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        asyncio.run(_serve_upstream())
        return 0
    upstream = start_child([sys.executable, "-m", "scenarios.faultproxy.bench", "--serve-upstream"])
    try:
        upstream_port = cast(int, urlsplit(upstream.url).port)
        choice = ServerChoice(url=args.toxiproxy_url) if args.toxiproxy_url else ServerChoice()
        extra = ["--loop", args.proxy_loop]
        with start_server(seed=0, choice=choice, extra_args=extra) as server:
            result = asyncio.run(
                _run(server.client(), upstream_port, args.quick, args.latency_only)
            )
            result["server"] = server.kind
            result["proxy_loop"] = args.proxy_loop
            # The machine is shared: the load says how much the tail figures can be trusted.
            result["load_average_1m"] = round(os.getloadavg()[0], 2)
            result["cpus"] = os.cpu_count()
    finally:
        upstream.stop(5)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
