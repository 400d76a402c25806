"""Server-Sent Events encoding (WHATWG HTML "event stream"), bytes in, bytes out."""

from __future__ import annotations

__all__ = ["DONE", "encode", "split_event"]

DONE = b"data: [DONE]\n\n"


def encode(data: bytes | str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event. Multi-line data becomes several ``data:`` lines, as the spec requires."""
    if isinstance(data, str):
        data = data.encode()
    out = bytearray()
    if event is not None:
        out += b"event: " + event.encode() + b"\n"
    if id is not None:
        out += b"id: " + id.encode() + b"\n"
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        out += b"data: " + line + b"\n"
    out += b"\n"
    return bytes(out)


def split_event(event: bytes) -> tuple[bytes, bytes]:
    """Two halves of an event, cut in the middle of its payload (for the split_chunk fault)."""
    cut = max(1, len(event) // 2)
    return event[:cut], event[cut:]
