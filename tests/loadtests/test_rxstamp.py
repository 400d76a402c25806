"""Kernel receive stamps: the pure conversion, then real loopback sockets read late on purpose."""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Iterator

import pytest

from loadtests.rxstamp import SCM_TIMESTAMPNS, StampedSocket, clock_pair, stamp_from_ancillary
from tests.support import wait_for


def _timespec(t: float) -> bytes:
    sec = int(t)
    return struct.pack("@qq", sec, round((t - sec) * 1e9))


def test_the_stamps_age_on_the_wall_clock_is_carried_over_to_the_perf_clock() -> None:
    anc = [(socket.SOL_SOCKET, SCM_TIMESTAMPNS, _timespec(1_700_000_000.25))]
    t = stamp_from_ancillary(anc, wall_now=1_700_000_000.28, perf_now=500.0)
    assert t == pytest.approx(500.0 - 0.03, abs=1e-6)


def test_no_stamp_a_zero_stamp_or_other_messages_give_none() -> None:
    assert stamp_from_ancillary([], 1.0, 2.0) is None
    assert stamp_from_ancillary([(socket.SOL_SOCKET, SCM_TIMESTAMPNS, _timespec(0))], 1, 2) is None
    other = [(socket.SOL_SOCKET, SCM_TIMESTAMPNS + 1, _timespec(5.0))]
    assert stamp_from_ancillary(other, 6.0, 2.0) is None
    short = [(socket.SOL_SOCKET, SCM_TIMESTAMPNS, b"\x01\x02")]
    assert stamp_from_ancillary(short, 6.0, 2.0) is None


def test_a_stamp_from_the_future_counts_as_now() -> None:
    # the wall clock was stepped back between the arrival and the read
    anc = [(socket.SOL_SOCKET, SCM_TIMESTAMPNS, _timespec(100.5))]
    assert stamp_from_ancillary(anc, wall_now=100.0, perf_now=7.0) == 7.0


def _wait_until_stamped(client: socket.socket, peer: socket.socket) -> None:
    """Linux turns receive stamping on for the whole stack a moment after the first socket
    asks (deferred work); segments before that come unstamped. Ping until one is stamped."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        peer.sendall(b"w")
        _, ancillary, _, _ = client.recvmsg(16, socket.CMSG_SPACE(16))
        if stamp_from_ancillary(ancillary, time.time(), time.perf_counter()) is not None:
            return
    pytest.fail("the kernel never stamped a segment")


def _queued(sock: socket.socket) -> int:
    """How many bytes wait in ``sock``'s receive queue (peeked, not read)."""
    try:
        return len(sock.recv(1024, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return 0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    server.close()
    try:
        yield client, peer
    finally:
        client.close()
        peer.close()


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is Linux's")
def test_data_read_late_keeps_its_arrival_time(pair: tuple[socket.socket, socket.socket]) -> None:
    client, peer = pair
    rx = StampedSocket(client)
    assert rx.kernel
    _wait_until_stamped(client, peer)
    sent = time.perf_counter()
    peer.sendall(b"token")
    # The stimulus, not a wait for a condition: a busy load generator reads 50 ms late.
    time.sleep(0.05)
    data, arrived, delay = rx.recv(1024)
    read = time.perf_counter()
    assert data == b"token"
    # Stamped at delivery (loopback delivers within sendall, give or take a softirq), not
    # at the read 50 ms later; the bands are wide for a loaded 2-core machine.
    assert sent - 0.001 <= arrived <= read - 0.040
    assert 0.040 <= delay <= read - sent + 0.001


def test_without_kernel_stamps_the_read_time_is_the_stamp(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    client, peer = pair
    rx = StampedSocket(client, kernel_stamps=False)
    sent = time.perf_counter()
    peer.sendall(b"token")
    time.sleep(0.05)
    data, arrived, delay = rx.recv(1024)
    assert data == b"token" and delay == 0.0
    assert arrived >= sent + 0.045


@pytest.mark.skipif(sys.platform != "linux", reason="SO_TIMESTAMPNS is Linux's")
def test_segments_queued_on_one_socket_share_the_last_ones_stamp(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    # The documented limit: what one read returns carries the newest arrival time.
    client, peer = pair
    rx = StampedSocket(client)
    _wait_until_stamped(client, peer)
    peer.sendall(b"a")
    time.sleep(0.03)
    second = time.perf_counter()
    peer.sendall(b"b")
    wait_for(lambda: _queued(client), 5.0, 0.001, "2 bytes queued", until=lambda n: n >= 2)
    data, arrived, _ = rx.recv(1024)
    assert data == b"ab"
    assert arrived >= second - 0.001


def test_the_clock_pair_is_read_at_one_instant() -> None:
    wall, perf = clock_pair()
    # the wall-minus-perf offset of the pair is the machine's offset now, to well under 1 ms
    assert abs((time.time() - time.perf_counter()) - (wall - perf)) < 0.001
