"""Conformance of the toxics over real TCP: timing (with bands for a shared 2-core box),
closing behaviour, live connections, enabled false/true, determinism.

Only HTTP (through our client) and sockets are used, so ``--toxiproxy-url`` runs them
against a real Toxiproxy too (the determinism tests are ours only).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import pytest

from scenarios.faultproxy.client import ProxyInfo, ToxiproxyClient
from tests.scenarios.faultproxy.helpers import (
    EchoServer,
    assert_added_latency,
    median_roundtrip_ms,
    read_until_closed,
    recv_exact,
    roundtrip_ms,
)

Connect = Callable[[int], socket.socket]


@pytest.fixture
def proxy(api: ToxiproxyClient, echo: EchoServer) -> ProxyInfo:
    return api.create_proxy("tcp", upstream=echo.address)


def test_passthrough_is_byte_exact(proxy: ProxyInfo, connect: Connect) -> None:
    sock = connect(proxy.port)
    payload = os.urandom(1_000_000)
    sender = threading.Thread(target=sock.sendall, args=(payload,))
    sender.start()
    assert recv_exact(sock, len(payload)) == payload
    sender.join()


def test_latency_adds_to_round_trip(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    sock = connect(proxy.port)
    base = median_roundtrip_ms(sock)
    api.add_toxic("tcp", "latency", attributes={"latency": 100})
    rtt = median_roundtrip_ms(sock)
    assert_added_latency(rtt, base, 100)
    api.add_toxic("tcp", "latency", stream="upstream", attributes={"latency": 50})
    rtt = median_roundtrip_ms(sock)
    assert_added_latency(rtt, base, 150)


def test_latency_is_pipelined(api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect) -> None:
    api.add_toxic("tcp", "latency", attributes={"latency": 150})
    sock = connect(proxy.port)
    start = time.perf_counter()
    for i in range(5):
        sock.sendall(bytes([65 + i]))
        time.sleep(0.02)  # spacing of the sends (not waiting for a condition)
    arrivals: list[float] = []
    received = b""
    while len(received) < 5:
        data = sock.recv(5)
        received += data
        arrivals += [time.perf_counter() - start] * len(data)
    assert received == b"ABCDE"
    # Each byte is delayed from its own send: the last arrives ~80 + 150 ms in, not 5 x 150.
    assert 0.22 <= arrivals[-1] <= 0.40, arrivals


def test_jitter_spreads_delays(api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect) -> None:
    api.add_toxic("tcp", "latency", attributes={"latency": 80, "jitter": 60})
    sock = connect(proxy.port)
    samples = [roundtrip_ms(sock) for _ in range(12)]
    # 20..140 ms drawn. Never below; the upper band leaves a busy 2-core machine room for
    # scheduling delay, and two samples for the odd wait far beyond it.
    assert min(samples) >= 18, samples
    assert sorted(samples)[-3] <= 260, samples
    assert max(samples) - min(samples) > 15, samples


def test_bandwidth_paces_bytes(api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect) -> None:
    api.add_toxic("tcp", "bandwidth", attributes={"rate": 100})  # 100 KB/s downstream
    sock = connect(proxy.port)
    payload = os.urandom(50_000)
    start = time.perf_counter()
    sock.sendall(payload)
    assert recv_exact(sock, len(payload)) == payload
    elapsed = time.perf_counter() - start
    assert 0.42 <= elapsed <= 0.85, elapsed


def test_bandwidth_rate_zero_stalls(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "bandwidth", attributes={"rate": 0})
    sock = connect(proxy.port)
    sock.sendall(b"stuck")
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(5)
    # Removing the toxic flushes what it held.
    api.remove_toxic("tcp", "bandwidth_downstream")
    sock.settimeout(5)
    assert recv_exact(sock, 5) == b"stuck"


def test_slow_close_delays_the_close(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "slow_close", attributes={"delay": 300})
    sock = connect(proxy.port)
    assert median_roundtrip_ms(sock) < 200  # a median: one sample can wait on a busy machine
    start = time.perf_counter()
    sock.shutdown(socket.SHUT_WR)
    data, how = read_until_closed(sock)
    elapsed = time.perf_counter() - start
    assert (data, how) == (b"", "eof")
    assert 0.28 <= elapsed <= 0.7, elapsed


def test_timeout_drops_data_then_closes(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    sock = connect(proxy.port)
    assert median_roundtrip_ms(sock) < 200  # a median: one sample can wait on a busy machine
    start = time.perf_counter()
    api.add_toxic("tcp", "timeout", attributes={"timeout": 250})
    sock.sendall(b"dropped")
    data, how = read_until_closed(sock)
    elapsed = time.perf_counter() - start
    assert (data, how) == (b"", "eof")
    # Never before the timeout; the upper bound only tells "closed" from "never closed"
    # (read_until_closed gives up after 5 s), with room for a busy machine.
    assert 0.23 <= elapsed <= 2.0, elapsed


def test_timeout_zero_is_silent_until_removed(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "timeout", attributes={"timeout": 0})
    sock = connect(proxy.port)
    sock.sendall(b"hello")
    sock.settimeout(0.4)
    with pytest.raises(TimeoutError):
        sock.recv(5)
    api.remove_toxic("tcp", "timeout_downstream")
    data, how = read_until_closed(sock)
    assert (data, how) == (b"", "eof")


def test_reset_peer_resets(api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect) -> None:
    api.add_toxic("tcp", "reset_peer", attributes={"timeout": 200})
    sock = connect(proxy.port)
    start = time.perf_counter()
    sock.sendall(b"trigger")
    data, how = read_until_closed(sock)
    elapsed = time.perf_counter() - start
    assert how == "reset"
    assert data == b""
    assert 0.18 <= elapsed <= 0.7, elapsed


def test_reset_peer_upstream_immediately(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "reset_peer", stream="upstream", attributes={"timeout": 0})
    sock = connect(proxy.port)
    sock.sendall(b"x")
    _, how = read_until_closed(sock)
    assert how == "reset"


def test_slicer_splits_data(api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect) -> None:
    api.add_toxic(
        "tcp", "slicer", attributes={"average_size": 10, "size_variation": 4, "delay": 10_000}
    )
    sock = connect(proxy.port)
    payload = os.urandom(200)
    start = time.perf_counter()
    sock.sendall(payload)
    pieces: list[bytes] = []
    while sum(map(len, pieces)) < len(payload):
        pieces.append(sock.recv(4096))
    elapsed = time.perf_counter() - start
    assert b"".join(pieces) == payload
    # ~20 pieces of 6..14 bytes, 10 ms apart: they arrive over ~200 ms in many reads (a
    # stalled reader may see a few pieces at once, never all of them).
    assert len(pieces) >= 5, [len(p) for p in pieces]
    assert max(map(len, pieces)) < 200
    assert elapsed >= 0.12, elapsed


def test_limit_data_truncates_then_closes(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "limit_data", attributes={"bytes": 100})
    sock = connect(proxy.port)
    payload = os.urandom(300)
    sock.sendall(payload)
    data, how = read_until_closed(sock)
    assert data == payload[:100]
    assert how == "eof"


def test_noop_and_zero_toxicity_pass_through(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "noop")
    api.add_toxic("tcp", "latency", toxicity=0.0, attributes={"latency": 1000})
    sock = connect(proxy.port)
    assert median_roundtrip_ms(sock) < 200


def test_upstream_down_closes_client(api: ToxiproxyClient, connect: Connect) -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    info = api.create_proxy("nowhere", upstream=address)
    sock = connect(info.port)
    data, how = read_until_closed(sock)
    assert data == b""
    assert how in {"eof", "reset"}


# -- toxics on live connections ---------------------------------------------------------------


def test_add_update_remove_on_live_connection(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    sock = connect(proxy.port)
    base = median_roundtrip_ms(sock)
    api.add_toxic("tcp", "latency", attributes={"latency": 100, "jitter": 0})
    assert_added_latency(median_roundtrip_ms(sock), base, 100)
    updated = api.update_toxic("tcp", "latency_downstream", attributes={"latency": 250})
    assert dict(updated.attributes) == {"latency": 250, "jitter": 0}
    assert_added_latency(median_roundtrip_ms(sock, 3), base, 250)
    api.remove_toxic("tcp", "latency_downstream")
    assert median_roundtrip_ms(sock) < base + 60


def test_removal_flushes_held_data(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "latency", attributes={"latency": 3000})
    sock = connect(proxy.port)
    start = time.perf_counter()
    sock.sendall(b"held")
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4)
    api.remove_toxic("tcp", "latency_downstream")
    sock.settimeout(5)
    assert recv_exact(sock, 4) == b"held"
    assert time.perf_counter() - start < 1.5


def test_limit_data_counts_across_updates(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "limit_data", attributes={"bytes": 10})
    sock = connect(proxy.port)
    sock.sendall(b"123456")
    assert recv_exact(sock, 6) == b"123456"
    api.update_toxic("tcp", "limit_data_downstream", attributes={"bytes": 8})
    sock.sendall(b"abcdef")
    data, how = read_until_closed(sock)
    assert (data, how) == (b"ab", "eof")


def test_enabled_false_then_true(api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect) -> None:
    live = connect(proxy.port)
    assert roundtrip_ms(live) < 500
    api.disable("tcp")
    assert read_until_closed(live) == (b"", "eof")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    api.enable("tcp")
    assert roundtrip_ms(connect(proxy.port)) < 500


def test_reset_removes_toxics_from_live_connections(
    api: ToxiproxyClient, proxy: ProxyInfo, connect: Connect
) -> None:
    api.add_toxic("tcp", "latency", attributes={"latency": 400})
    sock = connect(proxy.port)
    assert roundtrip_ms(sock) >= 390
    api.reset()
    assert median_roundtrip_ms(sock) < 200


FOREVER = 2**63 - 1  # ms: the largest value the API takes (Go's int64)

# toxic, stream, attributes, and what the client gets in all once the toxic lets go: the data
# it held (latency, bandwidth, slicer), the EOF it held (slow_close), the close that removing a
# timeout means (the data was dropped), or the reset a reset_peer was counting down to.
HOLDS_FOR_EVER = [
    ("latency", "downstream", {"latency": FOREVER}, b"held", "open"),
    ("bandwidth", "downstream", {"rate": 0}, b"held", "open"),
    ("slicer", "downstream", {"average_size": 1, "delay": FOREVER}, b"held", "open"),
    ("slow_close", "downstream", {"delay": FOREVER}, b"held", "eof"),
    ("timeout", "downstream", {"timeout": FOREVER}, b"", "eof"),
    ("reset_peer", "upstream", {"timeout": FOREVER}, b"", "reset"),
]


@pytest.mark.usefixtures("embedded_only")  # Go's Duration overflows: 2^63-1 ms is not for ever
@pytest.mark.parametrize("release", ["reset", "delete"])
@pytest.mark.parametrize(
    ("toxic_type", "stream", "attributes", "expected", "outcome"),
    HOLDS_FOR_EVER,
    ids=[row[0] for row in HOLDS_FOR_EVER],
)
def test_reset_and_delete_release_a_connection_held_for_ever(
    api: ToxiproxyClient,
    proxy: ProxyInfo,
    connect: Connect,
    toxic_type: str,
    stream: str,
    attributes: dict[str, int],
    expected: bytes,
    outcome: str,
    release: str,
) -> None:
    api.add_toxic("tcp", toxic_type, stream=stream, attributes=attributes)
    sock = connect(proxy.port)
    sock.sendall(b"held")
    received = b""
    if toxic_type == "slow_close":
        received = recv_exact(sock, 4)
        sock.shutdown(socket.SHUT_WR)  # the echo server closes in turn: its EOF is held
    elif toxic_type == "slicer":
        received = recv_exact(sock, 1)  # the first piece leaves, the wait after it never ends
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):  # held: nothing more comes (checked for 0.3 s)
        received += sock.recv(4)
    start = time.perf_counter()
    if release == "reset":
        api.reset()
    else:
        api.remove_toxic("tcp", f"{toxic_type}_{stream}")
    if outcome == "open":
        sock.settimeout(5)
        received += recv_exact(sock, len(expected) - len(received))
        assert received == expected
    else:
        data, how = read_until_closed(sock)
        assert (received + data, how) == (expected, outcome)
    # Promptly: an API round trip and a socket write, with room for a busy 2-core machine.
    assert time.perf_counter() - start < 1.5
    assert api.toxics("tcp") == []


# -- determinism (ours: the real server draws from an unseeded RNG) ---------------------------


def _toxicity_pattern(api: ToxiproxyClient, echo: EchoServer, seed: int, connect: Connect) -> str:
    info = api.create_proxy("det", upstream=echo.address, seed=seed)
    api.add_toxic("det", "limit_data", toxicity=0.5, attributes={"bytes": 1})
    pattern = ""
    for _ in range(16):
        sock = connect(info.port)
        sock.sendall(b"hello")
        received = b""
        sock.settimeout(5)
        while len(received) < 5 and (data := sock.recv(5)):
            received += data
        pattern += "T" if received == b"h" else "."
        sock.close()
    api.delete_proxy("det")
    return pattern


@pytest.mark.usefixtures("embedded_only")
def test_same_seed_same_toxicity_decisions(
    api: ToxiproxyClient, echo: EchoServer, connect: Connect
) -> None:
    first = _toxicity_pattern(api, echo, 42, connect)
    assert "T" in first
    assert "." in first
    assert _toxicity_pattern(api, echo, 42, connect) == first
    assert _toxicity_pattern(api, echo, 43, connect) != first


def _jitter_sequence(
    api: ToxiproxyClient, echo: EchoServer, seed: int, connect: Connect
) -> list[float]:
    info = api.create_proxy("jit", upstream=echo.address)
    api.add_toxic("jit", "latency", attributes={"latency": 70, "jitter": 60}, seed=seed)
    sock = connect(info.port)
    samples = [roundtrip_ms(sock) for _ in range(6)]
    api.delete_proxy("jit")
    return samples


@pytest.mark.usefixtures("embedded_only")
def test_same_seed_same_jitter_sequence(
    api: ToxiproxyClient, echo: EchoServer, connect: Connect
) -> None:
    first = _jitter_sequence(api, echo, 5, connect)
    second = _jitter_sequence(api, echo, 5, connect)
    assert max(first) - min(first) > 15, first  # the draws do vary...
    # ...the same way each run (one sample may be hit by a scheduling stall on a busy box).
    same = sum(abs(a - b) <= 12 for a, b in zip(first, second, strict=True))
    assert same >= 5, (first, second)
    other = _jitter_sequence(api, echo, 6, connect)
    differ = sum(abs(a - b) > 12 for a, b in zip(first, other, strict=True))
    assert differ >= 2, (first, other)
