"""A minimal, fast protocol-v1 WebSocket frame source for measuring the load generator.

To measure how precisely a Locust process timestamps frames, the frames must come from
something much cheaper than the process under test, and we must know exactly when each frame
left. This server speaks just enough of protocol v1 (``docs/protocol.md``: ``hello``, ``chat``
-> ``start``, ``token``..., ``end``) over a hand-rolled RFC 6455 server side (no masking, no
fragmentation, text frames only), and writes each token frame with its send time in the
``content`` field: ``time.perf_counter()`` formatted as text. On Linux ``perf_counter`` reads
``CLOCK_MONOTONIC``, which is shared by every process of the machine, so a client subtracts the
content from its own receive stamp to get the exact delay this token spent in the kernel and,
above all, waiting in the client's event loop: the load generator's timing error.

One ticker serves every connection (a single timer every ``tick_s``) so the source's own cost
stays a few microseconds per frame. Tokens of a stream are scheduled against the stream's
start (``ttft_s + i * itl_s``), like the mock's schedule.

Run: ``python -m loadtests.bench.framesource --port 0 --ttft-ms 0 --itl-ms 5 --tokens 200``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import heapq
import json
import signal
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from mockllm.cliargs import CommandParser
from reference_server.wire import PROTOCOL_V1

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def encode_text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame (server -> client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def decode_client_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Pop complete (masked) client frames from ``buf``: (opcode, payload) pairs."""
    out: list[tuple[int, bytes]] = []
    while len(buf) >= 2:
        opcode = buf[0] & 0x0F
        masked = buf[1] & 0x80
        n = buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                break
            mask = bytes(buf[pos : pos + 4])
            pos += 4
        if len(buf) < pos + n:
            break
        payload = bytes(buf[pos : pos + n])
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        del buf[: pos + n]
        out.append((opcode, payload))
    return out


@dataclass(frozen=True)
class SourceConfig:
    ttft_s: float = 0.0
    itl_s: float = 0.005
    tokens: int = 100
    tick_s: float = 0.0005


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    conn: _Conn = field(compare=False)
    stream_id: str = field(compare=False)
    index: int = field(compare=False)


class _Conn(asyncio.Protocol):
    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            self._handshake(head)
            return
        for opcode, payload in decode_client_frames(self.buf):
            if opcode == 0x8:  # close
                self.write(b"\x88\x02\x03\xe8")
                if self.transport is not None:
                    self.transport.close()
                return
            if opcode == 0x1:
                self._message(payload)

    def _handshake(self, head: str) -> None:
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key", "")
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}",
        ]
        if PROTOCOL_V1 in headers.get("sec-websocket-protocol", ""):
            lines.append(f"Sec-WebSocket-Protocol: {PROTOCOL_V1}")
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.upgraded = True
        hello = {
            "type": "hello",
            "protocol": PROTOCOL_V1,
            "session_id": "framesource",
            "resume_token": "x",
            "heartbeat_interval_ms": 0,
            "limits": {},
        }
        self.write(encode_text_frame(json.dumps(hello).encode()))

    def _message(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        if msg.get("type") == "chat":
            self.source.start_stream(self, str(msg.get("id")))


class FrameSource:
    """The server: ``await start()``, ``url``, ``await stop()``; ``frames_sent`` counts."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self._heap: list[_Due] = []
        self._seq = 0
        self.frames_sent = 0
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ticker = asyncio.create_task(self._tick_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()

    def start_stream(self, conn: _Conn, stream_id: str) -> None:
        start = {"type": "start", "id": stream_id, "stream_id": stream_id, "resume_token": "x"}
        conn.write(encode_text_frame(json.dumps(start).encode()))
        t0 = time.perf_counter() + self.config.ttft_s
        for i in range(self.config.tokens):
            self._seq += 1
            heapq.heappush(
                self._heap, _Due(t0 + i * self.config.itl_s, self._seq, conn, stream_id, i)
            )
        self._seq += 1
        heapq.heappush(
            self._heap,
            _Due(t0 + (self.config.tokens - 1) * self.config.itl_s, self._seq, conn, stream_id, -1),
        )

    async def _tick_loop(self) -> None:
        heap = self._heap
        perf = time.perf_counter
        n = self.config.tokens
        while True:
            now = perf()
            while heap and heap[0].at <= now:
                due = heapq.heappop(heap)
                if due.index < 0:
                    payload = (
                        f'{{"type":"end","id":"{due.stream_id}","finish_reason":"stop",'
                        f'"tokens":{n},"usage":{{}}}}'
                    )
                else:
                    payload = (
                        f'{{"type":"token","id":"{due.stream_id}","index":{due.index},'
                        f'"content":"{perf():.7f}"}}'
                    )
                    self.frames_sent += 1
                due.conn.write(encode_text_frame(payload.encode()))
            await asyncio.sleep(self.config.tick_s)


async def _serve(args: argparse.Namespace) -> None:
    source = FrameSource(
        SourceConfig(args.ttft_ms / 1000, args.itl_ms / 1000, args.tokens, args.tick_ms / 1000)
    )
    await source.start(args.host, args.port)
    print(f"framesource listening on {source.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await source.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(prog="python -m loadtests.bench.framesource")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--tick-ms", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.itl_ms < 0 or args.tokens < 1 or args.tick_ms <= 0:
        parser.error("--itl-ms must be >= 0, --tokens >= 1, --tick-ms > 0")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
