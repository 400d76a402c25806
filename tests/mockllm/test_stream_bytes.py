"""Every golden stream's bytes are what the mock writes today (tests/mockllm/stream_golden.py).

The golden file was recorded before the streaming path was rebuilt; a difference here is a
change of the wire format, the content or the schedule, never a refactoring detail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mockllm.app import MockApp, MockConfig
from mockllm.chat import build, prepare
from mockllm.client import MockAdmin
from mockllm.generation import Action, Script
from tests.mockllm.stream_golden import (
    CASES,
    CREATED,
    GOLDEN,
    Case,
    as_bytes,
    digest,
    record_events,
    record_wire,
    scope_of,
)
from tests.support import start_cli

GOLDEN_CASES: dict[str, Any] = json.loads(GOLDEN.read_text())
_DIGEST = re.compile(r"sha256:[0-9a-f]{16}:\d+")


def _comparable(golden: list[Any], events: list[Any]) -> list[Any]:
    """``events`` in the golden's form: where the golden keeps a digest, the digest."""
    out = []
    for i, (due, data, ntok, action) in enumerate(events):
        expected = golden[i][1] if i < len(golden) else ""
        if _DIGEST.fullmatch(expected) and not _DIGEST.fullmatch(data):
            data = digest(as_bytes(data))
        out.append([due, data, ntok, action])
    return out


def test_the_golden_file_covers_every_case() -> None:
    assert list(GOLDEN_CASES) == [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_events_are_the_golden_ones(case: Case) -> None:
    golden = GOLDEN_CASES[case.name]["events"]
    recorded = await record_events(case)
    recorded["events"] = _comparable(golden["events"], recorded["events"])
    assert recorded == golden


@pytest.mark.parametrize("case", [c for c in CASES if c.wire], ids=lambda case: case.name)
async def test_wire_is_the_golden_one(case: Case) -> None:
    golden = GOLDEN_CASES[case.name]["wire"]
    assert await record_wire(case) == golden


def test_golden_events_make_the_golden_body() -> None:
    """The golden file agrees with itself: a stream's body is its events end to end."""
    checked = 0
    for case in CASES:
        recorded = GOLDEN_CASES[case.name]
        events = recorded["events"]["events"]
        if not case.wire or not case.body.get("stream") or recorded["wire"]["status"] != 200:
            continue
        if any(_DIGEST.fullmatch(e[1]) for e in events):
            continue
        body = b"".join(as_bytes(e[1]) for e in events if e[3] != 2)
        body = body.replace(b'"created":1700000000', b'"created":0')
        if "split_chunk" not in case.headers.get("X-Mock-Fault", ""):
            assert digest(body) == recorded["wire"]["body"], case.name
            checked += 1
    assert checked > 20


# -- the same through a real server and a real HTTP client ------------------------------------

_OVER_HTTP = [c for c in CASES if c.wire and c.seed == 0 and "abort" not in c.name]
_HOP_BY_HOP = {"date", "server", "transfer-encoding", "content-length"}


@pytest.fixture(scope="module")
def seed0_url() -> Iterator[str]:
    mock = start_cli("mockllm", "--port", "0", "--seed", "0")
    try:
        yield mock.url
    finally:
        mock.stop()


@pytest.mark.integration
@pytest.mark.parametrize("case", _OVER_HTTP, ids=lambda case: case.name)
def test_bytes_over_http_are_the_golden_ones(seed0_url: str, case: Case) -> None:
    golden = GOLDEN_CASES[case.name]["wire"]
    admin = MockAdmin(seed0_url)
    try:
        admin.reset()  # numbering restarts: the completion id is the golden one
    finally:
        admin.close()
    with httpx.Client(base_url=seed0_url, timeout=30) as http:
        # Header values as UTF-8 bytes, as the in-memory cases send them.
        headers = {k: v.encode() for k, v in case.headers.items()}
        response = http.post("/v1/chat/completions", json=case.body, headers=headers)
    body = re.sub(rb'"created":\d+', b'"created":0', response.content)
    assert response.status_code == golden["status"]
    expected = [[k, v] for k, v in golden["headers"] if k not in _HOP_BY_HOP]
    assert [h for h in expected if response.headers.get(h[0]) != h[1]] == []
    assert digest(body) == golden["body"]


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.body.get("stream")], ids=lambda case: case.name
)
async def test_writes_are_the_events_joined(case: Case) -> None:
    """Script.writes(): the events in order, a run due at the same moment joined into one."""
    app = MockApp(MockConfig(seed=case.seed))
    raw = json.dumps(case.body).encode()
    prepared = await prepare(app, scope_of(case, raw), raw, commit=True)
    _, script = await build(case.seed, prepared, CREATED)
    assert isinstance(script, Script)
    events = list(script.events())
    writes = list(script.writes())
    assert b"".join(w[1] for w in writes) == b"".join(e[1] for e in events)
    i = 0
    for due, data, ntok, action in writes:
        covered = b""
        tokens = 0
        while True:  # the events this write covers: one at least
            e_due, e_data, e_ntok, e_action = events[i]
            assert (e_due, e_action) == (due, action), f"write of {ntok} tokens at {due}"
            covered += e_data
            tokens += e_ntok
            i += 1
            if action != Action.WRITE or len(covered) >= len(data):
                break
        assert (covered, tokens) == (data, ntok)
    assert i == len(events)
    # An instant answer without faults is a few items (a slice each), not one per token.
    if case.name in ("default", "tokens_300", "tokens_1000", "n_3", "usage"):
        assert len(writes) <= max(2, len(events) // 8)
