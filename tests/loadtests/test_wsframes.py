"""The users' WebSocket frame reader: bytes in any split, messages out."""

from __future__ import annotations

import struct

import pytest

from loadtests.bench.framesource import decode_client_frames, encode_text_frame
from loadtests.wsframes import OP_CLOSE, OP_PING, OP_TEXT, FrameError, FrameReader


def frame(op: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes((b0, m | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


@pytest.mark.parametrize("size", [0, 5, 125, 126, 300, 65535, 65536, 70000])
def test_every_length_encoding_in_every_split(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    data = frame(OP_TEXT, payload) + frame(OP_PING, b"hi")
    for step in (1, 7, 1000, len(data)):
        reader = FrameReader()
        out: list[tuple[int, bytes]] = []
        for i in range(0, len(data), step):
            out += reader.feed(data[i : i + step])
        assert out == [(OP_TEXT, payload), (OP_PING, b"hi")]


def test_fragments_are_joined_around_a_control_frame() -> None:
    data = (
        frame(OP_TEXT, b"hel", fin=False)
        + frame(OP_PING, b"")
        + frame(0x0, b"lo", fin=False)
        + frame(0x0, b"!", fin=True)
    )
    assert FrameReader().feed(data) == [(OP_PING, b""), (OP_TEXT, b"hello!")]


def test_masked_frames_are_unmasked() -> None:
    assert FrameReader().feed(frame(OP_CLOSE, b"\x03\xe8", mask=b"abcd")) == [
        (OP_CLOSE, b"\x03\xe8")
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (frame(0x0, b"x"), "continuation frame without"),
        (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), "new message before"),
        (frame(OP_PING, b"x", fin=False), "control frames"),
        (frame(0x3, b"x"), "unknown opcode"),
        (bytes((0xC1, 0x01)) + b"x", "reserved bits"),
    ],
)
def test_bad_framing_is_a_clear_error(data: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        FrameReader().feed(data)


def test_oversized_frame_is_refused_before_buffering() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        FrameReader(max_message=10).feed(frame(OP_TEXT, b"x" * 11)[:4])


def test_frame_source_codec_round_trips() -> None:
    big = b"y" * 70000
    assert FrameReader().feed(encode_text_frame(b"abc") + encode_text_frame(big)) == [
        (OP_TEXT, b"abc"),
        (OP_TEXT, big),
    ]
    buf = bytearray(frame(OP_TEXT, b"chat", mask=b"wxyz") + frame(OP_TEXT, b"tail")[:3])
    assert decode_client_frames(buf) == [(OP_TEXT, b"chat")]
    assert len(buf) == 3  # the incomplete frame stays buffered
