"""Conformance of the HTTP API: endpoints, status codes, defaults, ordering, error messages.

Written against HTTP only, so ``--toxiproxy-url`` runs them against a real Toxiproxy.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from scenarios.faultproxy.client import ToxiproxyClient
from tests.scenarios.faultproxy.helpers import EchoServer

ZERO_ATTRIBUTES = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slow_close": {"delay": 0},
    "timeout": {"timeout": 0},
    "reset_peer": {"timeout": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "limit_data": {"bytes": 0},
    "noop": {},
}


def create(http: httpx.Client, name: str, upstream: str, **extra: Any) -> dict[str, Any]:
    response = http.post("/proxies", json={"name": name, "upstream": upstream, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def port_of(listen: str) -> int:
    return int(listen.rpartition(":")[2])


def assert_error(response: httpx.Response, status: int, message: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    if message is not None:
        assert body["error"] == message
    else:
        assert body["error"]


def assert_alive(http: httpx.Client) -> None:
    assert http.get("/version").status_code == 200


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# -- server-level endpoints -------------------------------------------------------------------


def test_version(http: httpx.Client) -> None:
    response = http.get("/version")
    assert response.status_code == 200
    assert isinstance(response.json()["version"], str)


def test_browsers_are_refused(http: httpx.Client) -> None:
    response = http.get("/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert response.status_code == 403


# -- proxies ------------------------------------------------------------------------------------


def test_create_proxy_answers_201_with_resolved_listen(
    http: httpx.Client, echo: EchoServer
) -> None:
    body = create(http, "p1", echo.address, listen="127.0.0.1:0")
    assert body["name"] == "p1"
    assert body["upstream"] == echo.address
    assert body["enabled"] is True
    assert body["toxics"] == []
    assert body["listen"].startswith("127.0.0.1:")
    assert port_of(body["listen"]) != 0
    assert http.get("/proxies/p1").json() == body
    assert http.get("/proxies").json() == {"p1": body}


def test_create_disabled_proxy_does_not_listen(http: httpx.Client, echo: EchoServer) -> None:
    body = create(http, "off", echo.address, listen="127.0.0.1:0", enabled=False)
    assert body["enabled"] is False
    assert http.get("/proxies/off").json()["enabled"] is False


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"upstream": "127.0.0.1:1"}, "missing required field: name"),
        ({"name": "x"}, "missing required field: upstream"),
        ({}, "missing required field: name"),
        ({"name": "", "upstream": ""}, "missing required field: name"),
    ],
)
def test_create_proxy_missing_fields(
    http: httpx.Client, payload: dict[str, Any], message: str
) -> None:
    assert_error(http.post("/proxies", json=payload), 400, message)
    assert_alive(http)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b'{"name": 5, "upstream": "127.0.0.1:1"}', b'"name"'],
)
def test_create_proxy_bad_body(http: httpx.Client, content: bytes) -> None:
    response = http.post("/proxies", content=content)
    assert_error(response, 400)
    assert response.json()["error"].startswith("bad request body")
    assert_alive(http)


def test_create_proxy_enabled_of_wrong_type(http: httpx.Client) -> None:
    payload = {"name": "x", "upstream": "127.0.0.1:1", "enabled": "yes"}
    response = http.post("/proxies", json=payload)
    assert_error(response, 400)
    assert response.json()["error"].startswith("bad request body")
    assert "x" not in http.get("/proxies").json()


def test_duplicate_proxy_is_409(http: httpx.Client, echo: EchoServer) -> None:
    create(http, "dup", echo.address, listen="127.0.0.1:0")
    response = http.post("/proxies", json={"name": "dup", "upstream": echo.address})
    assert_error(response, 409, "proxy already exists")


def test_port_in_use_is_500_and_server_stays_up(http: httpx.Client, echo: EchoServer) -> None:
    first = create(http, "a", echo.address, listen="127.0.0.1:0")
    payload = {"name": "b", "upstream": echo.address, "listen": first["listen"]}
    response = http.post("/proxies", json=payload)
    assert_error(response, 500)
    assert "address already in use" in response.json()["error"]
    assert "b" not in http.get("/proxies").json()
    assert_alive(http)


def test_moving_to_a_busy_port_is_500_and_leaves_the_proxy_down(
    http: httpx.Client, echo: EchoServer
) -> None:
    first = create(http, "a", echo.address, listen="127.0.0.1:0")
    create(http, "b", echo.address, listen="127.0.0.1:0")
    response = http.patch("/proxies/b", json={"listen": first["listen"]})
    assert_error(response, 500)
    assert "address already in use" in response.json()["error"]
    assert http.get("/proxies/b").json()["enabled"] is False
    assert http.get("/proxies/a").json()["enabled"] is True
    assert_alive(http)


def test_populate_onto_a_busy_port_is_an_error(http: httpx.Client, echo: EchoServer) -> None:
    first = create(http, "a", echo.address, listen="127.0.0.1:0")
    response = http.post(
        "/populate", json=[{"name": "b", "upstream": echo.address, "listen": first["listen"]}]
    )
    assert response.status_code == 500
    assert "address already in use" in response.json()["error"]
    assert "b" not in http.get("/proxies").json()
    assert_alive(http)


def test_unknown_proxy_is_404(http: httpx.Client) -> None:
    assert_error(http.get("/proxies/nope"), 404, "proxy not found")
    assert_error(http.patch("/proxies/nope", json={"enabled": False}), 404, "proxy not found")
    assert_error(http.delete("/proxies/nope"), 404, "proxy not found")
    assert_error(http.get("/proxies/nope/toxics"), 404, "proxy not found")
    assert_error(http.post("/proxies/nope/toxics", json={"type": "noop"}), 404, "proxy not found")
    assert_error(http.get("/proxies/nope/toxics/t"), 404, "proxy not found")
    assert_error(http.delete("/proxies/nope/toxics/t"), 404, "proxy not found")


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_disable_and_enable(
    http: httpx.Client,
    echo: EchoServer,
    connect: Callable[[int], socket.socket],
    method: str,
) -> None:
    body = create(http, "de", echo.address, listen="127.0.0.1:0")
    port = port_of(body["listen"])
    live = connect(port)
    live.sendall(b"x")
    assert live.recv(1) == b"x"
    response = http.request(method, "/proxies/de", json={"enabled": False})
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    # Down: the live connection is closed, new ones are refused.
    live.settimeout(5)
    assert live.recv(1) == b""
    assert refuses(port)
    response = http.request(method, "/proxies/de", json={"enabled": True})
    assert response.status_code == 200
    assert response.json()["enabled"] is True
    assert response.json()["listen"] == body["listen"]  # same port again
    again = connect(port)
    again.sendall(b"y")
    assert again.recv(1) == b"y"


def test_update_upstream_restarts_proxy(
    http: httpx.Client, echo: EchoServer, connect: Callable[[int], socket.socket]
) -> None:
    body = create(http, "mv", "127.0.0.1:1", listen="127.0.0.1:0")
    response = http.patch("/proxies/mv", json={"upstream": echo.address})
    assert response.status_code == 200
    assert response.json()["upstream"] == echo.address
    assert response.json()["enabled"] is True
    sock = connect(port_of(response.json()["listen"]))
    sock.sendall(b"z")
    assert sock.recv(1) == b"z"
    assert port_of(body["listen"]) == port_of(response.json()["listen"])


def test_update_listen_moves_the_proxy(
    http: httpx.Client, echo: EchoServer, connect: Callable[[int], socket.socket]
) -> None:
    body = create(http, "ls", echo.address, listen="127.0.0.1:0")
    response = http.patch("/proxies/ls", json={"listen": "127.0.0.1:0"})
    assert response.status_code == 200
    moved = response.json()["listen"]
    assert moved != body["listen"]
    assert refuses(port_of(body["listen"]))
    sock = connect(port_of(moved))
    sock.sendall(b"m")
    assert sock.recv(1) == b"m"


def test_update_proxy_bad_body(http: httpx.Client, echo: EchoServer) -> None:
    create(http, "u", echo.address, listen="127.0.0.1:0")
    assert_error(http.patch("/proxies/u", content=b"{"), 400)
    assert_error(http.patch("/proxies/u", json={"enabled": 1}), 400)
    assert http.get("/proxies/u").json()["enabled"] is True


def test_delete_proxy(http: httpx.Client, echo: EchoServer) -> None:
    body = create(http, "gone", echo.address, listen="127.0.0.1:0")
    response = http.delete("/proxies/gone")
    assert response.status_code == 204
    assert response.content == b""
    assert_error(http.get("/proxies/gone"), 404, "proxy not found")
    assert refuses(port_of(body["listen"]))


# -- toxics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("toxic_type", sorted(ZERO_ATTRIBUTES))
def test_add_toxic_defaults(http: httpx.Client, echo: EchoServer, toxic_type: str) -> None:
    create(http, "t", echo.address, listen="127.0.0.1:0")
    attributes = {"average_size": 10} if toxic_type == "slicer" else {}
    response = http.post("/proxies/t/toxics", json={"type": toxic_type, "attributes": attributes})
    assert response.status_code == 200, response.text
    expected_attributes = {**ZERO_ATTRIBUTES[toxic_type], **attributes}
    assert response.json() == {
        "attributes": expected_attributes,
        "name": f"{toxic_type}_downstream",
        "type": toxic_type,
        "stream": "downstream",
        "toxicity": 1,
    }
    assert http.get(f"/proxies/t/toxics/{toxic_type}_downstream").json() == response.json()
    assert http.get("/proxies/t").json()["toxics"] == [response.json()]


def test_toxic_list_order_upstream_first(http: httpx.Client, echo: EchoServer) -> None:
    create(http, "o", echo.address, listen="127.0.0.1:0")
    for name, stream in [("d1", "downstream"), ("u1", "upstream"), ("d2", "downstream")]:
        payload: dict[str, Any] = {"name": name, "type": "noop", "stream": stream}
        assert http.post("/proxies/o/toxics", json=payload).status_code == 200
    payload = {"name": "u2", "type": "latency", "stream": "upstream", "toxicity": 0.5}
    added = http.post("/proxies/o/toxics", json=payload).json()
    assert added["toxicity"] == 0.5
    names = [t["name"] for t in http.get("/proxies/o/toxics").json()]
    assert names == ["u1", "u2", "d1", "d2"]


def test_toxic_errors(http: httpx.Client, echo: EchoServer) -> None:
    create(http, "e", echo.address, listen="127.0.0.1:0")
    url = "/proxies/e/toxics"
    assert_error(
        http.post(url, json={"type": "latency", "stream": "sideways"}),
        400,
        "stream was invalid, can be either upstream or downstream",
    )
    assert_error(http.post(url, json={"type": "frobnicate"}), 400, "invalid toxic type")
    assert_error(http.post(url, json={"attributes": {}}), 400, "invalid toxic type")
    assert http.post(url, json={"type": "latency", "name": "x"}).status_code == 200
    # Names are unique across both directions.
    assert_error(
        http.post(url, json={"type": "noop", "name": "x", "stream": "upstream"}),
        409,
        "toxic already exists",
    )
    assert_error(http.post(url, content=b"{oops"), 400)
    for bad in ({"latency": "100"}, {"latency": 1.5}, {"jitter": True}):
        response = http.post(url, json={"type": "latency", "name": "y", "attributes": bad})
        assert_error(response, 400)
        assert response.json()["error"].startswith("bad request body")
    assert_error(http.post(url, json={"type": "latency", "toxicity": "high"}), 400)
    assert_error(http.post(url, json={"type": "latency", "attributes": [1]}), 400)
    assert [t["name"] for t in http.get(url).json()] == ["x"]
    assert_error(http.get(f"{url}/nope"), 404, "toxic not found")
    assert_error(http.patch(f"{url}/nope", json={}), 404, "toxic not found")
    assert_error(http.delete(f"{url}/nope"), 404, "toxic not found")
    assert_alive(http)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_update_toxic_merges_attributes(http: httpx.Client, echo: EchoServer, method: str) -> None:
    create(http, "m", echo.address, listen="127.0.0.1:0")
    payload = {"type": "latency", "attributes": {"latency": 100, "jitter": 10}}
    http.post("/proxies/m/toxics", json=payload)
    response = http.request(
        method, "/proxies/m/toxics/latency_downstream", json={"attributes": {"latency": 250}}
    )
    assert response.status_code == 200
    assert response.json()["attributes"] == {"latency": 250, "jitter": 10}
    assert response.json()["toxicity"] == 1
    response = http.request(method, "/proxies/m/toxics/latency_downstream", json={"toxicity": 0.25})
    assert response.json()["toxicity"] == 0.25
    assert response.json()["attributes"] == {"latency": 250, "jitter": 10}
    shown = http.get("/proxies/m/toxics/latency_downstream").json()
    assert shown == response.json()
    bad = http.patch("/proxies/m/toxics/latency_downstream", json={"attributes": {"jitter": "x"}})
    assert_error(bad, 400)
    assert http.get("/proxies/m/toxics/latency_downstream").json() == shown


def test_delete_toxic(http: httpx.Client, echo: EchoServer) -> None:
    create(http, "dt", echo.address, listen="127.0.0.1:0")
    http.post("/proxies/dt/toxics", json={"type": "noop"})
    response = http.delete("/proxies/dt/toxics/noop_downstream")
    assert response.status_code == 204
    assert http.get("/proxies/dt/toxics").json() == []


def test_reset_enables_proxies_and_removes_toxics(http: httpx.Client, echo: EchoServer) -> None:
    create(http, "r1", echo.address, listen="127.0.0.1:0")
    create(http, "r2", echo.address, listen="127.0.0.1:0", enabled=False)
    http.post("/proxies/r1/toxics", json={"type": "latency", "stream": "upstream"})
    http.post("/proxies/r1/toxics", json={"type": "noop"})
    response = http.post("/reset")
    assert response.status_code == 204
    proxies = http.get("/proxies").json()
    assert proxies["r1"]["toxics"] == []
    assert proxies["r2"]["enabled"] is True


# -- populate -----------------------------------------------------------------------------------


def test_populate_creates_keeps_and_replaces(http: httpx.Client, echo: EchoServer) -> None:
    response = http.post(
        "/populate",
        json=[
            {"name": "pa", "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": "pb", "upstream": echo.address, "listen": "127.0.0.1:0", "enabled": False},
        ],
    )
    assert response.status_code == 201, response.text
    created = {p["name"]: p for p in response.json()["proxies"]}
    assert set(created) == {"pa", "pb"}
    assert created["pb"]["enabled"] is False
    http.post("/proxies/pa/toxics", json={"type": "noop"})
    # Same listen and upstream: kept (with its toxics). Different upstream: replaced.
    response = http.post(
        "/populate",
        json=[
            {"name": "pa", "upstream": echo.address, "listen": created["pa"]["listen"]},
            {"name": "pb", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
        ],
    )
    assert response.status_code == 201
    after = {p["name"]: p for p in response.json()["proxies"]}
    assert after["pa"]["toxics"] != []
    assert after["pa"]["listen"] == created["pa"]["listen"]
    assert after["pb"]["upstream"] == "127.0.0.1:1"
    assert after["pb"]["enabled"] is True


def test_populate_validates_everything_first(http: httpx.Client, echo: EchoServer) -> None:
    response = http.post(
        "/populate",
        json=[
            {"name": "ok", "upstream": echo.address, "listen": "127.0.0.1:0"},
            {"name": "broken", "listen": "127.0.0.1:0"},
        ],
    )
    assert response.status_code == 400
    body = response.json()
    assert "proxies" in body
    assert body["error"] == "missing required field: upstream at proxy 2"
    assert http.get("/proxies").json() == {}


@pytest.mark.parametrize("content", [b"{", b'{"name": "x"}', b""])
def test_populate_bad_body(http: httpx.Client, content: bytes) -> None:
    response = http.post("/populate", content=content)
    assert response.status_code == 400
    assert "proxies" in response.json()
    assert_alive(http)


# -- streamharness extensions (the real server answers differently or not at all) ---------------


@pytest.mark.usefixtures("embedded_only")
@pytest.mark.parametrize(
    ("toxic_type", "attributes"),
    [
        ("latency", {"latency": -1}),
        ("latency", {"latency": 10, "jitter": -5}),
        ("bandwidth", {"rate": -1}),
        ("slow_close", {"delay": -1}),
        ("timeout", {"timeout": -1}),
        ("reset_peer", {"timeout": -1}),
        ("limit_data", {"bytes": -1}),
        ("slicer", {"average_size": 0}),
        ("slicer", {"average_size": 10, "size_variation": 10}),
        ("slicer", {"average_size": 10, "size_variation": -1}),
        ("slicer", {"average_size": 10, "delay": -1}),
    ],
)
def test_values_that_would_crash_or_stall_are_400(
    http: httpx.Client, echo: EchoServer, toxic_type: str, attributes: dict[str, int]
) -> None:
    create(http, "bad", echo.address, listen="127.0.0.1:0")
    response = http.post("/proxies/bad/toxics", json={"type": toxic_type, "attributes": attributes})
    assert_error(response, 400)
    assert response.json()["error"].startswith("bad request body")
    assert http.get("/proxies/bad/toxics").json() == []
    # The same check applies to an update (after merging).
    ok = {"average_size": 10} if toxic_type == "slicer" else {}
    http.post("/proxies/bad/toxics", json={"type": toxic_type, "name": "t", "attributes": ok})
    assert_error(http.patch("/proxies/bad/toxics/t", json={"attributes": attributes}), 400)
    assert http.get("/proxies/bad/toxics/t").json()["attributes"] == {
        **ZERO_ATTRIBUTES[toxic_type],
        **ok,
    }
    assert_alive(http)


@pytest.mark.usefixtures("embedded_only")
@pytest.mark.parametrize("toxicity", [-0.1, 1.5])
def test_toxicity_out_of_range_is_400(
    http: httpx.Client, echo: EchoServer, toxicity: float
) -> None:
    create(http, "tx", echo.address, listen="127.0.0.1:0")
    response = http.post("/proxies/tx/toxics", json={"type": "noop", "toxicity": toxicity})
    assert_error(response, 400)


@pytest.mark.usefixtures("embedded_only")
def test_seed_is_an_extra_field(http: httpx.Client, echo: EchoServer) -> None:
    body = create(http, "sd", echo.address, listen="127.0.0.1:0", seed=7)
    assert body["seed"] == 7
    toxic = http.post("/proxies/sd/toxics", json={"type": "noop", "seed": 9}).json()
    assert toxic["seed"] == 9
    plain = create(http, "plain", echo.address, listen="127.0.0.1:0")
    assert "seed" not in plain


@pytest.mark.usefixtures("embedded_only")
def test_metrics_count_bytes_and_connections(
    http: httpx.Client,
    echo: EchoServer,
    connect: Callable[[int], socket.socket],
    api: ToxiproxyClient,
) -> None:
    body = create(http, "mx", echo.address, listen="127.0.0.1:0")
    sock = connect(port_of(body["listen"]))
    sock.sendall(b"12345")
    assert sock.recv(5) == b"12345"
    text = http.get("/metrics").text
    lines = [line for line in text.splitlines() if 'proxy="mx"' in line]
    by_name = {line.split("{")[0] + line.split('direction="')[-1][:4]: line for line in lines}
    assert by_name["toxiproxy_proxy_received_bytes_totalupst"].endswith(" 5")
    assert by_name["toxiproxy_proxy_sent_bytes_totaldown"].endswith(" 5")
    assert any(
        line.startswith("toxiproxy_proxy_connections") and line.endswith(" 1") for line in lines
    )
