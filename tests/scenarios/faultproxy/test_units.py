"""Pure logic of the fault proxy: toxic plans and REST shapes, with no sockets or loop."""

from __future__ import annotations

import functools
import itertools
import math
import random

import pytest

from scenarios.faultproxy.addresses import parse_port, split_host_port
from scenarios.faultproxy.errors import ApiError
from scenarios.faultproxy.models import (
    ToxicConfig,
    decode_proxy_create,
    decode_proxy_update,
    decode_toxic_create,
    decode_toxic_update,
    parse_json,
    populate_items,
)
from scenarios.faultproxy.toxics import (
    TOXIC_TYPES,
    Chunk,
    Close,
    Emit,
    InvalidAttributes,
    LimitDataState,
    Plan,
    Reset,
    RunningToxic,
    jitter_delays_ms,
    make_toxic,
    slice_offsets,
    validate_attributes,
)


def toxic(
    kind: str, rng_seed: int = 0, state: LimitDataState | None = None, **attrs: int
) -> RunningToxic:
    full = {name: 0 for name in TOXIC_TYPES[kind].names} | attrs
    validate_attributes(kind, full)
    return make_toxic(kind, full, random.Random(rng_seed), state)


def emits(plan: Plan) -> list[tuple[float, bytes]]:
    return [(round(a.at, 6), a.chunk.data) for a in plan.actions if isinstance(a, Emit)]


# -- latency ------------------------------------------------------------------------------------


def test_latency_counts_from_read_time_so_chunks_pipeline() -> None:
    t = toxic("latency", latency=100)
    # Read at 0.0, the stage only gets to it at 0.05 (busy with an earlier chunk): still 0.1.
    assert emits(t.on_chunk(Chunk(b"a", 0.0), now=0.05)) == [(0.1, b"a")]
    # Already late: goes out at once.
    assert emits(t.on_chunk(Chunk(b"b", 0.0), now=0.3)) == [(0.3, b"b")]


def test_latency_restamps_the_chunk_for_the_next_toxic() -> None:
    plan = toxic("latency", latency=100).on_chunk(Chunk(b"a", 1.0), now=1.0)
    action = plan.actions[0]
    assert isinstance(action, Emit)
    assert action.chunk.t == pytest.approx(1.1)
    assert plan.until == pytest.approx(1.1)


def test_jitter_is_seeded_and_bounded() -> None:
    first = jitter_delays_ms(100, 20, random.Random(9), 200)
    assert first == jitter_delays_ms(100, 20, random.Random(9), 200)
    assert first != jitter_delays_ms(100, 20, random.Random(10), 200)
    assert min(first) >= 80
    assert max(first) < 120
    assert len(set(first)) > 20
    assert jitter_delays_ms(100, 0, random.Random(1), 3) == [100, 100, 100]


def test_latency_toxic_draws_the_same_jitter_as_the_sequence() -> None:
    t = toxic("latency", rng_seed=4, latency=50, jitter=30)
    delays = jitter_delays_ms(50, 30, random.Random(4), 5)
    for delay in delays:
        assert emits(t.on_chunk(Chunk(b"x", 0.0), 0.0))[0][0] == pytest.approx(max(delay, 0) / 1000)


# -- bandwidth ----------------------------------------------------------------------------------


def test_bandwidth_splits_into_100ms_slices() -> None:
    t = toxic("bandwidth", rate=100)  # 100 KB/s: 10_000 bytes per 100 ms
    out = emits(t.on_chunk(Chunk(bytes(50_000), 0.0), now=0.0))
    assert [at for at, _ in out] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [len(d) for _, d in out] == [10_000] * 5


def test_bandwidth_paces_small_chunks_back_to_back() -> None:
    t = toxic("bandwidth", rate=10)  # 10_000 B/s
    first = t.on_chunk(Chunk(bytes(500), 0.0), now=0.0)
    assert emits(first) == [(0.05, bytes(500))]
    second = t.on_chunk(Chunk(bytes(500), 0.0), now=first.until)
    assert emits(second) == [(0.1, bytes(500))]


def test_bandwidth_rate_zero_holds_forever() -> None:
    plan = toxic("bandwidth", rate=0).on_chunk(Chunk(b"x", 0.0), 0.0)
    assert plan.until == math.inf
    assert emits(plan) == [(math.inf, b"x")]


# -- slicer -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("average", "variation"), [(10, 0), (10, 5), (1, 0), (100, 99)])
def test_slice_offsets_cover_the_chunk(average: int, variation: int) -> None:
    for size in (0, 1, 7, 100, 1000, 4097):
        bounds = slice_offsets(size, average, variation, random.Random(size))
        assert bounds[0] == 0
        assert bounds[-1] == size
        pieces = [b - a for a, b in itertools.pairwise(bounds)]
        assert all(p > 0 for p in pieces) or size == 0
        assert all(p <= average + variation or p <= 1 for p in pieces), pieces


def test_slicer_is_seeded() -> None:
    assert slice_offsets(1000, 20, 10, random.Random(1)) == slice_offsets(
        1000, 20, 10, random.Random(1)
    )
    assert slice_offsets(1000, 20, 10, random.Random(1)) != slice_offsets(
        1000, 20, 10, random.Random(2)
    )


def test_slicer_delays_each_piece() -> None:
    t = toxic("slicer", average_size=10, delay=1000)  # 1 ms
    plan = t.on_chunk(Chunk(bytes(40), 0.0), now=0.0)
    out = emits(plan)
    assert b"".join(d for _, d in out) == bytes(40)
    assert [at for at, _ in out] == [0.0, 0.001, 0.002, 0.003]
    assert plan.until == pytest.approx(0.004)


# -- closing toxics -----------------------------------------------------------------------------


def test_timeout_drops_and_closes_after_its_deadline() -> None:
    t = toxic("timeout", timeout=250)
    assert t.deadline(10.0) == Close(10.25)
    assert t.on_chunk(Chunk(b"x", 10.0), 10.1).actions == ()
    assert t.on_eof(10.2).actions == (Close(10.2),)
    assert t.closes_on_removal
    assert toxic("timeout", timeout=0).deadline(10.0) is None


def test_reset_peer_on_first_data_or_eof() -> None:
    t = toxic("reset_peer", timeout=100)
    assert t.on_chunk(Chunk(b"x", 1.0), 1.0).actions == (Reset(1.1),)
    assert t.on_eof(2.0).actions == (Reset(2.1),)
    assert t.uninterruptible


def test_slow_close_delays_eof_only() -> None:
    t = toxic("slow_close", delay=300)
    assert emits(t.on_chunk(Chunk(b"x", 1.0), 1.0)) == [(1.0, b"x")]
    assert t.on_eof(2.0).actions == (Close(2.3),)


def test_limit_data_truncates_and_keeps_count_across_restarts() -> None:
    state = LimitDataState()
    t = toxic("limit_data", state=state, bytes=10)
    assert t.on_chunk(Chunk(b"123456", 0.0), 0.0).actions == (Emit(0.0, Chunk(b"123456", 0.0)),)
    # Updated to 8 bytes: the 6 already sent still count.
    t = toxic("limit_data", state=state, bytes=8)
    plan = t.on_chunk(Chunk(b"abcdef", 0.0), 0.0)
    assert plan.actions == (Emit(0.0, Chunk(b"ab", 0.0)), Close(0.0))


def test_noop_and_eof() -> None:
    t = toxic("noop")
    assert emits(t.on_chunk(Chunk(b"x", 0.0), 0.5)) == [(0.5, b"x")]
    assert t.on_eof(1.0).actions == (Close(1.0),)


def go_slicer_is_safe(average: int, variation: int, sizes: range) -> bool:
    """Toxiproxy's SlicerToxic.chunk on every chunk size and every random draw: False when
    some draw cuts outside the chunk (a slice panic) or the recursion cannot end."""

    @functools.cache
    def safe(length: int) -> bool:
        if length - average <= variation:
            return length >= 0
        draws = range(-variation, variation) if variation > 0 else (0,)
        for r in draws:
            left = length // 2 + r
            if left < 0 or left > length:
                return False
            if left in (0, length):
                if variation <= 0:
                    return False  # no draw: the same range again, for ever
                continue  # the same range again, until another draw ends it
            if not (safe(left) and safe(length - left)):
                return False
        return True

    return all(safe(size) for size in sizes)


@pytest.mark.parametrize("average", range(-3, 8))
@pytest.mark.parametrize("variation", range(-4, 11))
def test_slicer_is_refused_exactly_where_toxiproxy_would_crash(
    average: int, variation: int
) -> None:
    attrs = {"average_size": average, "size_variation": variation, "delay": 0}
    go_ok = go_slicer_is_safe(average, variation, range(1, 40))
    if go_ok:
        validate_attributes("slicer", attrs)
    else:
        with pytest.raises(InvalidAttributes):
            validate_attributes("slicer", attrs)


@pytest.mark.parametrize(
    ("kind", "attrs", "ok"),
    [
        # Toxiproxy takes every int64 and these toxics cope (toxics/*.go): negative delays
        # do not wait, a negative timeout is silent like 0, negative bytes close on first data.
        ("latency", {"latency": -1}, True),
        ("latency", {"jitter": -1}, True),
        ("latency", {"jitter": 2**62 - 1}, True),
        ("slow_close", {"delay": -1}, True),
        ("timeout", {"timeout": -1}, True),
        ("reset_peer", {"timeout": -1}, True),
        ("limit_data", {"bytes": -1}, True),
        ("bandwidth", {"rate": 0}, True),
        # These panic in the real server: rand.Int63n(2*jitter) overflows, p.Data[:rate*100].
        ("latency", {"jitter": 2**62}, False),
        ("bandwidth", {"rate": -5}, False),
    ],
)
def test_attributes_are_refused_only_where_toxiproxy_crashes(
    kind: str, attrs: dict[str, int], ok: bool
) -> None:
    full = {name: 0 for name in TOXIC_TYPES[kind].names} | attrs
    if ok:
        validate_attributes(kind, full)
    else:
        with pytest.raises(InvalidAttributes):
            validate_attributes(kind, full)


@pytest.mark.parametrize(
    ("average", "variation"), [(10, 10), (10, 11), (0, 1), (10, -5), (1, 0), (3, 4)]
)
def test_slice_offsets_cover_the_chunk_with_any_accepted_values(
    average: int, variation: int
) -> None:
    for size in (1, 2, 3, 7, 100, 4097):
        bounds = slice_offsets(size, average, variation, random.Random(size))
        assert (bounds[0], bounds[-1]) == (0, size)
        assert all(a < b for a, b in itertools.pairwise(bounds)), bounds


def test_negative_delays_do_not_wait() -> None:
    assert emits(toxic("latency", latency=-50).on_chunk(Chunk(b"a", 1.0), now=1.0)) == [(1.0, b"a")]
    assert toxic("slow_close", delay=-5).on_eof(now=2.0).until == 2.0
    plan = toxic("slicer", average_size=1, delay=-1000).on_chunk(Chunk(b"abc", 0.0), now=3.0)
    assert [at for at, _ in emits(plan)] == [3.0, 3.0, 3.0]
    assert plan.until == 3.0


# -- REST shapes --------------------------------------------------------------------------------


def test_toxic_defaults() -> None:
    config = decode_toxic_create({"type": "latency"}, set())
    assert config == ToxicConfig(
        "latency_downstream", "latency", "downstream", 1.0, {"latency": 0, "jitter": 0}
    )
    assert config.to_json() == {
        "attributes": {"latency": 0, "jitter": 0},
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1,
    }


def test_toxic_keys_match_case_insensitively_like_go() -> None:
    config = decode_toxic_create(
        {"Type": "bandwidth", "Stream": "upstream", "Attributes": {"Rate": 5}}, set()
    )
    assert (config.type, config.stream, dict(config.attributes)) == (
        "bandwidth",
        "upstream",
        {"rate": 5},
    )


def test_toxic_check_order_matches_the_real_server() -> None:
    def error(body: object, names: set[str] | None = None) -> tuple[int, str]:
        with pytest.raises(ApiError) as info:
            decode_toxic_create(body, names or set())
        return info.value.status, info.value.message

    # Stream before type, type before duplicate name, duplicate before attributes.
    assert error({"type": "nope", "stream": "x"})[0] == 400
    assert error({"type": "nope", "stream": "x"})[1].startswith("stream was invalid")
    assert error({"type": "nope", "name": "a"}, {"a"}) == (400, "invalid toxic type")
    assert error({"type": "noop", "name": "a", "attributes": 5}, {"a"}) == (
        409,
        "toxic already exists",
    )
    status, message = error({"type": "latency", "attributes": {"latency": 1.5}})
    assert status == 400
    assert "cannot unmarshal number 1.5" in message


def test_toxic_update_merges_and_null_keeps() -> None:
    current = decode_toxic_create(
        {"type": "latency", "attributes": {"latency": 5, "jitter": 2}}, set()
    )
    updated = decode_toxic_update({"attributes": {"latency": 9, "jitter": None}}, current)
    assert dict(updated.attributes) == {"latency": 9, "jitter": 2}
    assert updated.toxicity == 1.0
    assert decode_toxic_update({"toxicity": 0}, current).toxicity == 0.0


def test_proxy_shapes() -> None:
    spec = decode_proxy_create({"name": "a", "upstream": "h:1"}, default_listen="127.0.0.1:0")
    assert (spec.listen, spec.enabled, spec.seed) == ("127.0.0.1:0", True, None)
    with pytest.raises(ApiError, match="missing required field: name"):
        decode_proxy_create({"upstream": "h:1"}, default_listen="x")
    # Toxiproxy only dials the upstream when a client connects: any text is accepted.
    assert decode_proxy_create({"name": "a", "upstream": "nohost"}, default_listen="x").upstream
    assert decode_proxy_update({"enabled": False}, default_listen="d:0").enabled is False
    # An empty listen is the default, as on creation; null keeps the current one.
    assert decode_proxy_update({"listen": ""}, default_listen="d:0").listen == "d:0"
    assert decode_proxy_update({"listen": None}, default_listen="d:0").listen is None


def test_populate_rejects_duplicates_and_names_the_item() -> None:
    with pytest.raises(ApiError, match="duplicate proxy name"):
        populate_items(
            [{"name": "a", "upstream": "h:1"}, {"name": "a", "upstream": "h:2"}], default_listen="x"
        )
    with pytest.raises(ApiError, match="upstream at proxy 2"):
        populate_items([{"name": "a", "upstream": "h:1"}, {"name": "b"}], default_listen="x")


def test_toxic_seed_top_level_or_in_attributes() -> None:
    assert decode_toxic_create({"type": "noop", "seed": 4}, set()).seed == 4
    in_attrs = decode_toxic_create({"type": "latency", "attributes": {"seed": 5}}, set())
    assert in_attrs.seed == 5
    assert "seed" not in in_attrs.attributes
    assert in_attrs.to_json()["seed"] == 5
    assert decode_toxic_create({"type": "noop"}, set()).seed is None
    with pytest.raises(ApiError):
        decode_toxic_create({"type": "noop", "attributes": {"seed": "x"}}, set())


def test_integers_beyond_int64_are_rejected_like_go() -> None:
    with pytest.raises(ApiError, match="cannot unmarshal number"):
        decode_toxic_create({"type": "latency", "attributes": {"latency": 2**63}}, set())
    with pytest.raises(ApiError):
        decode_toxic_create({"type": "latency", "toxicity": float("nan")}, set())


# -- host:port as Go reads it -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", "8000")),
        (":8000", ("", "8000")),
        ("[::1]:0", ("::1", "0")),
        ("localhost:http", ("localhost", "http")),
        ("127.0.0.1:", ("127.0.0.1", "")),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", "80")),
    ],
)
def test_split_host_port_like_go(address: str, expected: tuple[str, str]) -> None:
    parsed = split_host_port(address)
    assert (parsed.host, parsed.port) == expected


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "missing port in address"),
        ("", "missing port in address"),
        ("bad:addr:x", "too many colons in address"),
        ("::1:80", "too many colons in address"),
        ("[::1", "missing ']' in address"),
        ("[::1]", "missing port in address"),
        ("[::1]x:80", "missing port in address"),
        ("[::1]:80:1", "too many colons in address"),
        ("a[b:80", "unexpected '[' in address"),
        ("ab]:80", "unexpected ']' in address"),
    ],
)
def test_split_host_port_errors_are_gos(address: str, why: str) -> None:
    with pytest.raises(ApiError) as info:
        split_host_port(address)
    assert (info.value.status, info.value.message) == (500, f"address {address}: {why}")


@pytest.mark.parametrize(
    ("service", "port"),
    [("8000", 8000), ("0", 0), ("", 0), ("65535", 65535), ("+80", 80), ("http", None)],
)
def test_parse_port(service: str, port: int | None) -> None:
    assert parse_port(service) == port


@pytest.mark.parametrize("service", ["65536", "99999", "-1", "99999999999999999999"])
def test_out_of_range_ports_are_400(service: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_port(service)
    assert info.value.status == 400
    assert "0-65535" in info.value.message


# -- JSON as it comes in ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "EOF"),
        (b"  ", "EOF"),
        (b"{", "bad request body"),
        (b"\xff", "bad request body"),
        (b'{"a": NaN}', "NaN"),
        (b"[Infinity]", "Infinity"),
        (b'"\\ud800"', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b'[[["x\\ud83d"]]]', "surrogate"),
        (b"[" * 100_000, "bad request body"),
    ],
)
def test_parse_json_refuses(raw: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_json(raw)
    assert info.value.status == 400
    assert fragment in info.value.message


def test_parse_json_keeps_valid_text() -> None:
    # A surrogate pair is one character (U+1F600); only a lone half is refused.
    assert parse_json(b'{"name": "\\ud83d\\ude00 ok", "n": [1, 2.5, null]}') == {
        "name": "\U0001f600 ok",
        "n": [1, 2.5, None],
    }
