"""Incremental reader of server-to-client WebSocket frames (RFC 6455), without I/O.

Why not ``websocket-client``'s own ``recv()``: it reads each frame with two or three exact-size
``recv`` calls (header, length, payload), and under gevent each call is a trip through the hub.
At tens of thousands of frames per second that, not JSON, is what a load generator spends its
CPU on, and a busy loop stamps frames late. The users keep websocket-client for the handshake
and for sending (it masks client frames), then read the raw socket in large chunks and feed
them here: every complete frame in one chunk gets that chunk's receive time, which is exactly
when the process could first have seen it.

Handles 7/16/64-bit lengths, masked frames (allowed, though servers do not mask), fragmented
messages (continuation frames) and control frames interleaved with fragments.
"""

from __future__ import annotations

from loadtests.errors import FrameError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameReader",
    "close_code",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def close_code(payload: bytes) -> int | None:
    """The status code of a close frame's payload (None when the peer sent none)."""
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


class FrameReader:
    """``feed(bytes) -> [(opcode, payload)]`` for complete messages and control frames.

    Text and binary messages are returned whole (fragments joined) with opcode TEXT/BINARY;
    control frames (close, ping, pong) are returned as they come.
    """

    __slots__ = ("_buf", "_frag_op", "_frags", "max_message")

    def __init__(self, max_message: int = 64 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._frag_op: int | None = None
        self._frags: list[bytes] = []
        self.max_message = max_message

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if n > self.max_message:
                raise FrameError(f"frame of {n} bytes exceeds the {self.max_message} limit")
            masked = b1 & 0x80
            if masked:
                head += 4
            if end - pos < head + n:
                break
            payload = bytes(buf[pos + head : pos + head + n])
            if masked:
                mask = buf[pos + head - 4 : pos + head]
                payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
            pos += head + n
            if b0 & 0x70:
                raise FrameError("reserved bits set (no extension was negotiated)")
            fin = b0 & 0x80
            op = b0 & 0x0F
            if op >= 0x8:
                if not fin or n > 125:
                    raise FrameError("control frames must be final and at most 125 bytes")
                out.append((op, payload))
            elif op == OP_CONT:
                if self._frag_op is None:
                    raise FrameError("continuation frame without a message to continue")
                self._frags.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frags)))
                    self._frag_op, self._frags = None, []
            elif op in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise FrameError("new message before the previous one was finished")
                if fin:
                    out.append((op, payload))
                else:
                    self._frag_op, self._frags = op, [payload]
            else:
                raise FrameError(f"unknown opcode {op:#x}")
        if pos:
            del buf[:pos]
        return out
