"""Benchmark of the fault proxy: ``python -m scenarios.faultproxy.bench``.

Measures, against the embedded server (or ``--toxiproxy-url``), with every process on
127.0.0.1 and the upstream in its own process:

1. bulk throughput through a proxy with no toxics vs a direct connection (MB/s);
2. token-sized messages (24 B, one write each, streamed by the upstream) per second;
3. added round-trip latency with no toxics (1-byte ping-pong, p50/p99 vs direct);
4. latency-toxic accuracy: 100 concurrent connections ping-ponging through ``latency 50 ms``,
   error = measured round trip - 50 ms - direct round trip p50 (p50/p99/max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from scenarios.faultproxy.client import ServerChoice, ToxiproxyClient, start_server

__all__ = ["main"]

MESSAGE = b"x" * 23 + b"\n"


class _Upstream(asyncio.Protocol):
    """Echo, except: a line ``S <n>\\n`` first streams n messages, ``B\\n`` sinks bytes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
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
    print(server.sockets[0].getsockname()[1], flush=True)
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


async def _latency_accuracy(port: int, conns: int, rounds: int, latency_ms: int) -> list[float]:
    rng = random.Random(0)
    samples: list[float] = []

    async def one(offset: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(offset)  # spread the connections over the latency window
        for _ in range(rounds):
            start = time.perf_counter()
            writer.write(b"p")
            await reader.readexactly(1)
            samples.append((time.perf_counter() - start) * 1000 - latency_ms)
        writer.close()

    await asyncio.gather(*(one(rng.uniform(0, latency_ms / 1000)) for _ in range(conns)))
    return samples


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _run(api: ToxiproxyClient, upstream: int, quick: bool) -> dict[str, Any]:
    api.delete_proxy("bench") if "bench" in api.proxies() else None
    proxy = api.create_proxy("bench", upstream=f"127.0.0.1:{upstream}")
    total = (50 if quick else 300) * 1_000_000
    count = 50_000 if quick else 300_000
    rounds = 500 if quick else 3000
    result: dict[str, Any] = {}
    direct_mb = statistics.median([await _bulk_mb_s(upstream, total) for _ in range(3)])
    proxy_mb = statistics.median([await _bulk_mb_s(proxy.port, total) for _ in range(3)])
    result["throughput_mb_s"] = {"direct": round(direct_mb, 1), "proxy": round(proxy_mb, 1)}
    direct_msg = statistics.median([await _messages_per_s(upstream, count) for _ in range(3)])
    proxy_msg = statistics.median([await _messages_per_s(proxy.port, count) for _ in range(3)])
    result["messages_per_s_24B"] = {"direct": round(direct_msg), "proxy": round(proxy_msg)}
    direct_rtt = await _rtts_ms(upstream, rounds)
    proxy_rtt = await _rtts_ms(proxy.port, rounds)
    d50, p50 = statistics.median(direct_rtt), statistics.median(proxy_rtt)
    result["rtt_ms"] = {
        "direct_p50": round(d50, 4),
        "direct_p99": round(_pct(direct_rtt, 0.99), 4),
        "proxy_p50": round(p50, 4),
        "proxy_p99": round(_pct(proxy_rtt, 0.99), 4),
        "added_p50": round(p50 - d50, 4),
    }
    api.add_toxic("bench", "latency", attributes={"latency": 50})
    runs = []
    for _ in range(1 if quick else 3):
        # Repeated: on a shared machine one run's tail says more about the neighbours.
        errors = await _latency_accuracy(proxy.port, 100, 5 if quick else 20, 50)
        errors = [e - d50 for e in errors]
        runs.append(
            {
                "samples": len(errors),
                "p50": round(statistics.median(errors), 3),
                "p99": round(_pct(errors, 0.99), 3),
                "max": round(max(errors), 3),
                "min": round(min(errors), 3),
            }
        )
    result["latency_toxic_error_ms_100_conns"] = runs
    buckets = _lateness_buckets(api.metrics())
    if buckets:
        total_obs = buckets[-1][1]
        result["proxy_side_lateness"] = {
            "deliveries": total_obs,
            **{f"within_{le}_s": round(n / total_obs, 4) for le, n in buckets[:-1] if total_obs},
        }
    api.delete_proxy("bench")
    return result


def _lateness_buckets(metrics: str) -> list[tuple[str, int]]:
    """Cumulative buckets of the embedded server's delivery lateness histogram."""
    out = []
    for line in metrics.splitlines():
        if line.startswith("faultproxy_delivery_lateness_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out.append((le, int(line.rsplit(" ", 1)[1])))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios.faultproxy.bench")
    parser.add_argument("--quick", action="store_true", help="smaller runs (a few seconds)")
    parser.add_argument("--toxiproxy-url", help="measure this server instead of the embedded one")
    parser.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream:
        asyncio.run(_serve_upstream())
        return 0
    upstream = subprocess.Popen(
        [sys.executable, "-m", "scenarios.faultproxy.bench", "--serve-upstream"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert upstream.stdout is not None
        upstream_port = int(upstream.stdout.readline())
        choice = ServerChoice(url=args.toxiproxy_url) if args.toxiproxy_url else ServerChoice()
        with start_server(seed=0, choice=choice) as server:
            result = asyncio.run(_run(server.client(), upstream_port, args.quick))
            result["server"] = server.kind
            # The machine is shared: the load says how much the tail figures can be trusted.
            result["load_average_1m"] = round(os.getloadavg()[0], 2)
            result["cpus"] = os.cpu_count()
    finally:
        upstream.terminate()
        upstream.wait(5)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
