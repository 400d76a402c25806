"""The server's own CPU per relayed token, under N concurrent WebSocket v1 streams.

    streamharness bench relayload --users 100 --ttft-ms 0 --itl-ms 0
    streamharness bench relayload --users 100 --tokens 50

Starts mockllm (``--directives``) and reference_server on port 0, runs ``--users`` asyncio
WebSocket clients (websockets; permessage-deflate only with ``--deflate``) that each stream
answers back to back for ``--duration`` seconds, and prints tokens/s, the server process's
CPU (user + system, via psutil) per token received, the mock's and this driver's CPU, and TTFT
percentiles (nearest rank, :mod:`mockllm.percentiles`) as this client sees them. ``CPU
µs/token`` depends far less on what else runs on the machine than latency does, which is why
it is the figure to compare between versions of the server (``--cwd DIR`` runs the server
from another checkout, e.g. a ``git archive`` of an older commit). Attach a profiler to the
printed server pid to see where that CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

import psutil
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from mockllm.childproc import start_child, stop_process
from mockllm.cliargs import CommandParser
from mockllm.percentiles import percentile
from reference_server.wire import PROTOCOL_V1


def _start(args: list[str], cwd: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    child = start_child(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stderr=subprocess.DEVNULL,
        failure=lambda started: SystemExit(f"{args[1]} did not start: {started.text!r}"),
    )
    return child.proc, child.url


def _pct_ms(values: list[float], p: float) -> float:
    # NaN, not an error, when no stream got a token: the CPU figures are still worth printing.
    return percentile(values, p) * 1000 if values else float("nan")


async def _user(
    url: str, content: str, stop_at: float, ttfts: list[float], tokens: list[int], deflate: bool
) -> None:
    async with connect(
        f"{url}/ws/chat/load",
        subprotocols=[Subprotocol(PROTOCOL_V1)],
        compression="deflate" if deflate else None,
        max_queue=None,
    ) as ws:
        await ws.recv()  # hello
        n = 0
        while time.perf_counter() < stop_at:
            n += 1
            sent = time.perf_counter()
            chat = {
                "type": "chat",
                "id": f"c{n}",
                "messages": [{"role": "user", "content": content}],
            }
            await ws.send(json.dumps(chat))
            first = True
            while True:
                raw = await ws.recv()
                assert isinstance(raw, str)
                kind = re.match(r'\{"type":"(\w+)"', raw)
                kind_name = kind.group(1) if kind else ""
                if kind_name == "token":
                    if first:
                        ttfts.append(time.perf_counter() - sent)
                        first = False
                    tokens[0] += 1
                elif kind_name in ("end", "error", "cancelled"):
                    break


async def run(args: argparse.Namespace) -> None:
    mock, mock_url = _start(["-m", "mockllm", "--port", "0", "--directives"], os.getcwd(), {})
    server, url = _start(
        ["-m", "reference_server", "--port", "0", "--upstream", f"{mock_url}/v1"],
        args.cwd,
        {
            "STREAMHARNESS_SERVER_RESUME_GRACE_S": "0",
            "STREAMHARNESS_SERVER_WS_PER_MESSAGE_DEFLATE": str(args.deflate).lower(),
        },
    )
    ws_url = "ws" + url.removeprefix("http")
    content = f"[[mock ttft_ms={args.ttft_ms:g} itl_ms={args.itl_ms:g} tokens={args.tokens}]] relay"
    server_p, mock_p, me = psutil.Process(server.pid), psutil.Process(mock.pid), psutil.Process()

    def cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    try:
        print(f"server pid {server.pid}", flush=True)
        warm = time.perf_counter() + 0.5
        await asyncio.gather(
            *(_user(ws_url, content, warm, [], [0], args.deflate) for _ in range(5))
        )
        ttfts: list[float] = []
        tokens = [0]
        before = cpu(server_p), cpu(mock_p), cpu(me), time.perf_counter()
        stop_at = time.perf_counter() + args.duration
        await asyncio.gather(
            *(
                _user(ws_url, content, stop_at, ttfts, tokens, args.deflate)
                for _ in range(args.users)
            )
        )
        wall = time.perf_counter() - before[3]
        used = [cpu(server_p) - before[0], cpu(mock_p) - before[1], cpu(me) - before[2]]
        print(
            f"users={args.users} schedule=ttft {args.ttft_ms:g} ms, {args.tokens} tokens every "
            f"{args.itl_ms:g} ms | streams={len(ttfts)} tokens={tokens[0]} "
            f"tokens/s={tokens[0] / wall:,.0f} | server CPU {100 * used[0] / wall:.0f}% = "
            f"{1e6 * used[0] / max(tokens[0], 1):.1f} µs/token | "
            f"mock CPU {100 * used[1] / wall:.0f}% | driver CPU {100 * used[2] / wall:.0f}% | "
            f"TTFT p50 {_pct_ms(ttfts, 50):.1f} ms "
            f"p99 {_pct_ms(ttfts, 99):.1f} ms"
        )
    finally:
        for proc in (server, mock):
            stop_process(proc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness bench relayload",
        description=__doc__.split("\n\n")[0],
        epilog=(
            "Examples:\n"
            "  streamharness bench relayload\n"
            "  streamharness bench relayload --users 200 --deflate\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=100, help="streams at once (default 100)")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds (default 8)")
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="mock TTFT (default 100)")
    parser.add_argument(
        "--itl-ms", type=float, default=20.0, help="mock inter-token gap (default 20)"
    )
    parser.add_argument("--tokens", type=int, default=50, help="tokens per answer (default 50)")
    parser.add_argument(
        "--deflate", action="store_true", help="permessage-deflate on (server and clients)"
    )
    parser.add_argument("--cwd", default=os.getcwd(), help="run the server from this checkout")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
