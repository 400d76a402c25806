"""Measure cancel/disconnect latency and one-socket throughput on this machine.

    .venv/bin/python -m tests.reference_server.measure [--runs 30]

Starts mockllm and reference_server (port 0), prints the figures quoted in
docs/reference_server.md, and stops both.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from mockllm.percentiles import percentile
from tests.reference_server.conftest import BASE_ENV, Ledger, start_process
from tests.reference_server.wsclient import V1Client, prompt


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: n={len(values)} median={statistics.median(values) * 1000:.1f} ms "
        f"p95={percentile(values, 95) * 1000:.1f} ms max={max(values) * 1000:.1f} ms"
    )


async def measure(runs: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    mock = start_process(["-m", "mockllm", "--port", "0", "--directives"], tmp / "mock.log")
    env = {**BASE_ENV, "STREAMHARNESS_SERVER_RESUME_GRACE_S": "0"}
    args = ["-m", "reference_server", "--port", "0", "--upstream", f"{mock.url}/v1"]
    server = start_process(args, tmp / "server.log", env)
    ledger = Ledger(mock.url)
    try:
        cancel, drop = [], []
        for n in range(runs):
            ledger.clear()
            client = await V1Client.open(server.ws_url)
            await client.chat("a", prompt(f"m{n}", tokens=1000, itl_ms=10))
            await client.collect("a", stop_after_tokens=3)
            sent = time.time()
            await client.send(type="cancel", id="a")
            [entry] = await asyncio.to_thread(ledger.wait, 1, "client_disconnected")
            cancel.append(entry["ended_at"] - sent)
            await client.chat("b", prompt(f"d{n}", tokens=1000, itl_ms=10))
            await client.collect("b", stop_after_tokens=3)
            sent = time.time()
            await client.drop()
            entries = await asyncio.to_thread(ledger.wait, 2, "client_disconnected")
            drop.append(entries[-1]["ended_at"] - sent)
        print(summary("cancel -> upstream closed (mock ledger)", cancel))
        print(summary("abrupt drop, grace 0 -> upstream closed", drop))
        client = await V1Client.open(server.ws_url)
        count = 20_000
        started = time.perf_counter()
        await client.chat("t", prompt("throughput", tokens=count))
        got = await client.collect("t", wait_s=120)
        elapsed = time.perf_counter() - started
        assert len(got.tokens) == count
        print(
            f"one WebSocket, instant mock: {count} tokens in {elapsed:.2f} s "
            f"= {count / elapsed:,.0f} tokens/s"
        )
        await client.close()
        async with httpx.AsyncClient(base_url=server.url) as http:
            print("stats after:", (await http.get("/stats")).json())
    finally:
        ledger.client.close()
        server.stop()
        mock.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(measure(parser.parse_args().runs))


if __name__ == "__main__":
    main()
