"""Benchmark: the mock's streaming hot path against a minimal raw-asyncio SSE writer.

``python -m mockllm.bench`` starts two servers, each pinned to one CPU core when the machine
has more than one: the real mock (``python -m mockllm``) and a baseline written directly on
asyncio streams that does nothing but write the same pre-encoded chunks on the same schedule.
A raw-asyncio client (pinned to another core) opens N concurrent streaming requests against
each and measures:

- throughput (``instant`` profile): tokens delivered per second of wall time and per second of
  server CPU time (the fair figure on a shared machine), and the mock/baseline ratio;
- timing (a fixed inter-token latency, e.g. 1,000 streams at 20 tokens/s): the error of every
  observed inter-token gap against the scheduled gap, as nearest-rank percentiles
  (:mod:`mockllm.percentiles`).

See docs/mockllm.md ("Speed") for the figures measured on our machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import psutil

from mockllm.childproc import start_child, stop_process
from mockllm.cliargs import CommandParser
from mockllm.content import lorem_tokens
from mockllm.formats.openai_chat import ChunkEncoder
from mockllm.percentiles import percentile

__all__ = ["main"]

_TOKEN_MARK = b'{"content":'


# -- the baseline server -----------------------------------------------------------------------


def _events(enc: ChunkEncoder, count: int) -> list[bytes]:
    """The baselines' answer: ``count`` content chunks, the role on the first."""
    events = [enc.content(0, token) for token in lorem_tokens(count, count)]
    events[0] = enc.role(0) + events[0]
    return events


async def _paced(events: list[bytes], itl: float) -> AsyncIterator[bytes]:
    """``events`` on the mock's schedule: event ``i`` at ``start + i * itl`` (0 = at once)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, event in enumerate(events):
        if itl:
            delay = start + i * itl - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield event


async def _baseline_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 keep-alive loop writing chunked SSE with no framework at all."""
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            await reader.readexactly(int(headers.get(b"content-length", b"0")))
            count = int(headers.get(b"x-mock-tokens", b"32"))
            itl = float(headers.get(b"x-mock-itl-ms", b"0")) / 1000.0
            enc = ChunkEncoder("chatcmpl-baseline", int(time.time()), "gpt-4o-mini")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            async for event in _paced(_events(enc, count), itl):
                writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                await writer.drain()
            done = enc.finish(0, "stop") + enc.done
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except ConnectionError:
        return
    finally:
        writer.close()


async def _serve_baseline(port: int) -> None:
    server = await asyncio.start_server(_baseline_connection, "127.0.0.1", port, backlog=4096)
    print(
        f"baseline listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True
    )
    async with server:
        await server.serve_forever()


# -- the same stream through Starlette's StreamingResponse (for comparison only) ----------------


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def chat(request: Request) -> StreamingResponse:
        await request.body()
        count = int(request.headers.get("x-mock-tokens", "32"))
        itl = float(request.headers.get("x-mock-itl-ms", "0")) / 1000.0
        enc = ChunkEncoder("chatcmpl-starlette", int(time.time()), "gpt-4o-mini")

        async def body() -> Any:
            async for event in _paced(_events(enc, count), itl):
                yield event
            yield enc.finish(0, "stop") + enc.done

        return StreamingResponse(body(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _serve_starlette(port: int, loop: str) -> None:
    import socket

    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    print(f"starlette listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        _starlette_app(),
        loop=loop,
        http="httptools",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


# -- the client ----------------------------------------------------------------------------------


@dataclass
class StreamResult:
    tokens: int = 0
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens so far)
    error: str | None = None


class _StreamProtocol(asyncio.Protocol):
    """Reads one streamed response; a protocol callback per read is the cheapest client."""

    def __init__(self, request: bytes, tokens: int, record: bool, done: asyncio.Future[None]):
        self.request = request
        self.expected = tokens
        self.record = record
        self.done = done
        self.result = StreamResult()
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        # A marker may straddle two reads: keep the last few bytes for the next count.
        window = self.tail + data
        found = window.count(_TOKEN_MARK)
        self.tail = window[-(len(_TOKEN_MARK) - 1) :]
        result = self.result
        if found:
            result.tokens += found
            if self.record:
                result.arrivals.append((now, result.tokens))
        if data.endswith(b"0\r\n\r\n") and result.tokens >= self.expected:
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.result.error = str(exc)
        if not self.done.done():
            self.done.set_result(None)


async def _one_stream(
    host: str, port: int, tokens: int, itl_ms: float, delay: float, record: bool
) -> StreamResult:
    await asyncio.sleep(delay)
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bench"}], "stream": True}
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        + f"X-Mock-Tokens: {tokens}\r\nX-Mock-Itl-Ms: {itl_ms}\r\n".encode()
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        _, protocol = await loop.create_connection(
            lambda: _StreamProtocol(request, tokens, record, done), host, port
        )
    except OSError as exc:
        return StreamResult(error=f"connect: {exc}")
    await done
    return protocol.result


async def _run_load(
    host: str, port: int, streams: int, tokens: int, itl_ms: float, stagger: float, record: bool
) -> tuple[float, list[StreamResult]]:
    rng = random.Random(0)
    delays = [rng.uniform(0, stagger) if stagger else 0.0 for _ in range(streams)]
    start = time.perf_counter()
    results = await asyncio.gather(
        *(_one_stream(host, port, tokens, itl_ms, d, record) for d in delays)
    )
    return time.perf_counter() - start, list(results)


def gap_errors_ms(
    results: list[StreamResult],
    itl_ms: float,
    window: tuple[float, float] = (float("-inf"), float("inf")),
) -> list[float]:
    """|observed - scheduled| of every inter-token gap that lies inside ``window``."""
    low, high = window
    errors: list[float] = []
    for result in results:
        previous = None
        for when, total in result.arrivals:
            if previous is not None and previous[0] >= low and when <= high:
                prev_when, prev_total = previous
                # Several tokens in one read: the scheduled gap covers all of them.
                expected = (total - prev_total) * itl_ms
                errors.append(abs((when - prev_when) * 1000.0 - expected))
            previous = (when, total)
    return errors


def _all_active_window(results: list[StreamResult]) -> tuple[float, float] | None:
    """From the last stream's first token to the first stream's last: all streams live."""
    spans = [(r.arrivals[0][0], r.arrivals[-1][0]) for r in results if r.arrivals]
    if not spans:
        return None
    low, high = max(s[0] for s in spans), min(s[1] for s in spans)
    return (low, high) if low < high else None


def gap_summary(gaps: list[float]) -> dict[str, Any]:
    """Count, nearest-rank p50/p90/p99 and max of the gap errors (``None`` without gaps)."""

    def pct(p: float) -> float | None:
        return round(percentile(gaps, p), 3) if gaps else None

    return {
        "count": len(gaps),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": round(max(gaps), 3) if gaps else None,
    }


# -- orchestration -------------------------------------------------------------------------------


def _start(cmd: list[str], cpu: int | None) -> tuple[subprocess.Popen[str], str, int]:
    child = start_child(cmd, failure=lambda _: RuntimeError(f"server did not start: {cmd}"))
    if cpu is not None:
        os.sched_setaffinity(child.proc.pid, {cpu})
    address = urlsplit(child.url)
    assert address.hostname is not None and address.port is not None
    return child.proc, address.hostname, address.port


def _measure(
    proc: subprocess.Popen[str],
    host: str,
    port: int,
    *,
    streams: int,
    tokens: int,
    itl_ms: float,
    stagger: float,
    record: bool,
) -> dict[str, Any]:
    ps = psutil.Process(proc.pid)
    # Warm up (imports, caches, first connections) outside the measurement.
    asyncio.run(_run_load(host, port, min(streams, 20), min(tokens, 50), 0, 0, False))
    cpu_before = sum(ps.cpu_times()[:2])
    wall, results = asyncio.run(_run_load(host, port, streams, tokens, itl_ms, stagger, record))
    cpu = sum(ps.cpu_times()[:2]) - cpu_before
    delivered = sum(r.tokens for r in results)
    errors = [r.error for r in results if r.error]
    out: dict[str, Any] = {
        "streams": streams,
        "tokens_per_stream": tokens,
        "itl_ms": itl_ms,
        "delivered_tokens": delivered,
        "expected_tokens": streams * tokens,
        "failed_streams": len(errors),
        "wall_s": round(wall, 3),
        "server_cpu_s": round(cpu, 3),
        "tokens_per_s": round(delivered / wall),
        "tokens_per_cpu_s": round(delivered / cpu) if cpu > 0 else None,
    }
    if record:
        out["gap_error_ms"] = gap_summary(gap_errors_ms(results, itl_ms))
        # The same, only while every stream is live (after the ramp-up of new requests).
        window = _all_active_window(results)
        if window is not None:
            out["all_active_s"] = round(window[1] - window[0], 3)
            out["all_active_gap_error_ms"] = gap_summary(gap_errors_ms(results, itl_ms, window))
    return out


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of every number (gap percentiles included), plus the rounds."""

    def median_of(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {k: median_of([v[k] for v in values]) for k in values[0]}
        numbers = [v for v in values if isinstance(v, (int, float))]
        return round(statistics.median(numbers), 3) if numbers else None

    return {"median": median_of(results), "rounds": results}


def _ratios(
    server: list[dict[str, Any]], baseline: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """server/baseline throughput per round (both measured in the same round) and the median."""
    out: dict[str, dict[str, Any]] = {}
    for key in ("tokens_per_cpu_s", "tokens_per_s"):
        # A run too short to register CPU time has no ratio.
        ratios = [
            round(m[key] / b[key], 3)
            for m, b in zip(server, baseline, strict=True)
            if m[key] and b[key]
        ]
        out[key] = {
            "median": round(statistics.median(ratios), 3) if ratios else None,
            "rounds": ratios,
        }
    return out


def _servers(loop: str, starlette: bool = False) -> dict[str, list[str]]:
    servers = {
        "mockllm": [sys.executable, "-m", "mockllm", "--port", "0", "--loop", loop],
        "baseline": [sys.executable, "-m", "mockllm.bench", "--serve-baseline", "--loop", loop],
    }
    if starlette:
        servers["starlette"] = [
            *(sys.executable, "-m", "mockllm.bench", "--serve-starlette", "--loop", loop)
        ]
    return servers


def _run_client(loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m mockllm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--throughput-streams", type=int, default=100)
    parser.add_argument("--throughput-tokens", type=int, default=2000)
    parser.add_argument("--timing-streams", type=int, default=1000)
    parser.add_argument("--timing-tokens", type=int, default=100)
    parser.add_argument("--timing-itl-ms", type=float, default=50.0, help="50 ms = 20 tokens/s")
    parser.add_argument(
        "--stagger-s", type=float, default=1.0, help="spread timing-stream starts over this"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    parser.add_argument("--skip", choices=("throughput", "timing"), action="append", default=[])
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--compare-starlette",
        action="store_true",
        help="also measure the same stream served by Starlette's StreamingResponse",
    )
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-starlette", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    _run_client(args.loop)
    if args.serve_baseline:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_baseline(args.port))
        return 0
    if args.serve_starlette:
        _serve_starlette(args.port, args.loop)
        return 0
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) >= 2
    server_cpu = cpus[0] if pin else None
    if pin:
        # The client gets the other cores so it never competes with the server it measures.
        os.sched_setaffinity(0, set(cpus[1:]))
    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loop": args.loop,
            "pinned": pin,
        },
    }
    # Both servers stay up (idle when not measured) and are measured in alternation, round
    # after round: on a shared machine, load from other processes then hits both alike.
    started = {
        name: _start(cmd, server_cpu)
        for name, cmd in _servers(args.loop, args.compare_starlette).items()
    }
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"throughput": [], "timing": []} for name in started
    }
    try:
        for _ in range(args.rounds):
            for name, (proc, host, port) in started.items():
                if "throughput" not in args.skip:
                    rounds[name]["throughput"].append(
                        _measure(
                            proc,
                            host,
                            port,
                            streams=args.throughput_streams,
                            tokens=args.throughput_tokens,
                            itl_ms=0.0,
                            stagger=0.0,
                            record=False,
                        )
                    )
                if "timing" not in args.skip:
                    rounds[name]["timing"].append(
                        _measure(
                            proc,
                            host,
                            port,
                            streams=args.timing_streams,
                            tokens=args.timing_tokens,
                            itl_ms=args.timing_itl_ms,
                            stagger=args.stagger_s,
                            record=True,
                        )
                    )
    finally:
        for proc, _, _ in started.values():
            stop_process(proc)
    for name, kinds in rounds.items():
        report[name] = {kind: _summary(results) for kind, results in kinds.items() if results}
    if "throughput" not in args.skip:
        report["ratio"] = _ratios(rounds["mockllm"]["throughput"], rounds["baseline"]["throughput"])
        if "starlette" in rounds:
            report["ratio_starlette"] = _ratios(
                rounds["starlette"]["throughput"], rounds["baseline"]["throughput"]
            )
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
