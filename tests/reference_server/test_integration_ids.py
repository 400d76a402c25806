"""A stream's id names it only together with the token issued to its owner, on every transport.

Each case: an owner creates a stream over HTTP with its own ``id``; an intruder who knows that id
(and even the ``stream_id``) tries one entry point; it is refused without learning anything of
the stream, and the owner still reads every token of its one generation.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.reference_server.httpapi import create, read_events
from tests.reference_server.live import Ledger, Process
from tests.reference_server.wsclient import V1Client, assert_dense, prompt

pytestmark = pytest.mark.integration

TOKENS = 30
Owner = dict[str, Any]
Attempt = Callable[[httpx.AsyncClient, Process, Owner], Awaitable[None]]


def assert_refused(response: httpx.Response, status: int, code: str, owner: Owner) -> None:
    """The refusal is the bare error body: nothing of the owner's stream in it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "retryable"}
    assert body["error"]["code"] == code and body["error"]["retryable"] is False
    assert owner["resume_token"] not in response.text
    assert owner["stream_id"] not in response.text


async def create_again_without_token(http: httpx.AsyncClient, _: Process, owner: Owner) -> None:
    response = await http.post("/v1/streams", json={"id": owner["id"], "messages": prompt("x")})
    assert_refused(response, 409, "id_in_use", owner)


async def create_again_with_a_wrong_token(
    http: httpx.AsyncClient, _: Process, owner: Owner
) -> None:
    body = {"id": owner["id"], "messages": prompt("x"), "resume_token": "guess"}
    assert_refused(await http.post("/v1/streams", json=body), 409, "id_in_use", owner)
    response = await http.post(
        "/v1/streams",
        json={"id": owner["id"], "messages": prompt("x")},
        headers={"X-Resume-Token": "guess"},
    )
    assert_refused(response, 409, "id_in_use", owner)


async def read_events_without_token(http: httpx.AsyncClient, _: Process, owner: Owner) -> None:
    url = f"/v1/streams/{owner['stream_id']}/events"
    assert_refused(await http.get(url), 403, "forbidden", owner)
    assert_refused(await http.get(url, params={"resume_token": "guess"}), 403, "forbidden", owner)


async def poll_without_token(http: httpx.AsyncClient, _: Process, owner: Owner) -> None:
    url = f"/v1/streams/{owner['stream_id']}/tokens"
    assert_refused(await http.get(url), 403, "forbidden", owner)
    response = await http.get(url, headers={"X-Resume-Token": "guess"})
    assert_refused(response, 403, "forbidden", owner)


async def cancel_without_token(http: httpx.AsyncClient, _: Process, owner: Owner) -> None:
    url = f"/v1/streams/{owner['stream_id']}"
    assert_refused(await http.delete(url), 403, "forbidden", owner)
    response = await http.delete(url, headers={"X-Resume-Token": "guess"})
    assert_refused(response, 403, "forbidden", owner)


async def blocking_with_the_id(http: httpx.AsyncClient, _: Process, owner: Owner) -> None:
    body = {"id": owner["id"], "messages": prompt("intruder", tokens=3)}
    response = await http.post("/v1/chat/blocking", json=body)
    # Its own answer: a blocking call never looks an id up.
    assert response.status_code == 200 and response.json()["tokens"] == 3
    assert response.json()["stream_id"] != owner["stream_id"]


async def websocket_with_the_id(_: httpx.AsyncClient, server: Process, owner: Owner) -> None:
    intruder = await V1Client.open(server.ws_url, owner["id"])
    await intruder.send(type="cancel", id=owner["id"])
    assert (await intruder.recv_type("error"))["code"] == "unknown_stream"
    for token in ("guess", intruder.hello["resume_token"]):
        await intruder.send(
            type="resume", stream_id=owner["stream_id"], after=-1, resume_token=token
        )
        error = await intruder.recv_type("error")
        assert error["code"] == "forbidden" and owner["resume_token"] not in json.dumps(error)
    await intruder.chat(owner["id"], prompt("x"), resume_token="guess")
    assert (await intruder.recv_type("error"))["code"] == "forbidden"
    # A chat with the same id is the intruder's own stream, with its own token.
    await intruder.chat(owner["id"], prompt("intruder", tokens=3))
    got = await intruder.collect(owner["id"])
    assert got.start is not None and got.start["stream_id"] != owner["stream_id"]
    assert got.start["resume_token"] != owner["resume_token"]
    assert got.terminal is not None and got.terminal["type"] == "end" and len(got.tokens) == 3
    await intruder.close()


@pytest.mark.parametrize(
    ("attempt", "intruder_requests"),
    [
        (create_again_without_token, 0),
        (create_again_with_a_wrong_token, 0),
        (read_events_without_token, 0),
        (poll_without_token, 0),
        (cancel_without_token, 0),
        (blocking_with_the_id, 1),
        (websocket_with_the_id, 1),
    ],
)
async def test_an_id_without_its_token_gets_nothing_of_the_stream(
    server: Process, ledger: Ledger, attempt: Attempt, intruder_requests: int
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        owner_id = f"owner-{attempt.__name__}"
        messages = prompt(f"owner-stream {owner_id}", tokens=TOKENS, itl_ms=30)
        owner = await create(http, id=owner_id, messages=messages)
        assert owner["id"] == owner_id
        ledger.wait(1)  # the owner's generation runs while the intruder tries
        await attempt(http, server, owner)
        events = await read_events(http, owner["events_url"])
    tokens = [e["data"] for e in events if e.get("event") == "token"]
    assert_dense([t["index"] for t in tokens], TOKENS)
    assert events[-1]["event"] == "end" and events[-1]["data"]["tokens"] == TOKENS
    ledger.wait(1 + intruder_requests, outcome="completed")
    [mine] = [e for e in ledger.requests() if owner_id in json.dumps(e["body"])]
    assert mine["outcome"] == "completed"
    assert "".join(t["content"] for t in tokens) == mine["text"]
    assert len(ledger.requests()) == 1 + intruder_requests


async def test_the_owner_gets_its_stream_again_with_its_token(
    server: Process, ledger: Ledger
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        body = {"id": "resent-create", "messages": prompt("mine", tokens=5)}
        first = await create(http, **body)
        in_body = await http.post(
            "/v1/streams", json={**body, "resume_token": first["resume_token"]}
        )
        in_header = await http.post(
            "/v1/streams", json=body, headers={"X-Resume-Token": first["resume_token"]}
        )
        for again in (in_body, in_header):
            assert again.status_code == 200 and again.json() == first
        ledger.wait(1, outcome="completed")
        assert len(ledger.requests()) == 1
