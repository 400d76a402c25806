"""Conformance of the HTTP API: endpoints, status codes, defaults, ordering, error messages.

Written against HTTP only, so ``--toxiproxy-url`` runs them against a real Toxiproxy.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from scenarios.faultproxy.client import RunningServer, ToxiproxyClient
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


def echoes(port: int, payload: bytes = b"ok") -> bool:
    """A fresh connection through the proxy on ``port`` gets ``payload`` echoed back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(len(payload)) == payload


def busy_listen(http: httpx.Client, echo: EchoServer) -> str:
    """An address another proxy listens on."""
    return create(http, "holder", echo.address, listen="127.0.0.1:0")["listen"]


# (listen, expected status, real Toxiproxy 2.12 agrees). Toxiproxy's ProxyUpdate calls
# proxy.Differs, whose net.ResolveTCPAddr error is a plain error, i.e. a 500, before anything
# is stopped (proxy.go); a port out of range is a 400 here by design; a busy port makes the
# real server stop the proxy first and fail to start it again (left down: not copied).
BAD_LISTENS = [
    ("bad:addr:x", 500, True),
    ("127.0.0.1", 500, True),
    ("[::1", 500, True),
    ("nosuchhost.invalid:0", 500, True),
    ("127.0.0.1:99999", 400, False),
    ("127.0.0.1:-1", 400, False),
    ("BUSY", 500, False),
]


@pytest.mark.parametrize(("listen", "status", "as_toxiproxy"), BAD_LISTENS)
def test_a_failed_listen_change_leaves_the_proxy_as_it_was(
    http: httpx.Client,
    echo: EchoServer,
    toxiproxy_server: RunningServer,
    connect: Callable[[int], socket.socket],
    listen: str,
    status: int,
    as_toxiproxy: bool,
) -> None:
    if not as_toxiproxy and toxiproxy_server.kind != "embedded":
        pytest.skip("the real server answers this differently")
    if listen == "BUSY":
        listen = busy_listen(http, echo)
    before = create(http, "a", echo.address, listen="127.0.0.1:0")
    create(http, "other", echo.address, listen="127.0.0.1:0")
    http.post("/proxies/other/toxics", json={"type": "latency"})
    live = connect(port_of(before["listen"]))
    response = http.patch("/proxies/a", json={"listen": listen})
    assert_error(response, status)
    assert http.get("/proxies/a").json() == before
    assert echoes(port_of(before["listen"]))
    live.sendall(b"still")
    assert live.recv(5) == b"still"  # the live connection was not touched either
    reset = http.post("/reset")
    assert reset.status_code == 204, reset.text
    assert http.get("/proxies/other/toxics").json() == []


@pytest.mark.usefixtures("embedded_only")
def test_a_failed_enable_leaves_a_disabled_proxy_as_it_was(
    http: httpx.Client, echo: EchoServer
) -> None:
    taken = busy_listen(http, echo)
    before = create(http, "off", echo.address, listen="127.0.0.1:0", enabled=False)
    response = http.patch("/proxies/off", json={"listen": taken, "enabled": True})
    assert_error(response, 500)
    assert "address already in use" in response.json()["error"]
    assert http.get("/proxies/off").json() == before


def test_an_empty_listen_moves_the_proxy_to_a_fresh_port(
    http: httpx.Client, echo: EchoServer
) -> None:
    # Go decodes "" over the old value and listens on a random port again (":0").
    before = create(http, "e", echo.address, listen="127.0.0.1:0")
    response = http.patch("/proxies/e", json={"listen": ""})
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["enabled"] is True
    assert port_of(after["listen"]) not in (0, port_of(before["listen"]))
    assert echoes(port_of(after["listen"]))


def test_same_listen_spelled_differently_does_not_restart(
    http: httpx.Client, echo: EchoServer, connect: Callable[[int], socket.socket]
) -> None:
    # Toxiproxy 2.12 compares the resolved address ("do not restart proxies when using
    # hostnames"): localhost:PORT is the address it already listens on.
    before = create(http, "same", echo.address, listen="127.0.0.1:0")
    live = connect(port_of(before["listen"]))
    response = http.patch(
        "/proxies/same", json={"listen": f"localhost:{port_of(before['listen'])}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["listen"] == before["listen"]
    live.sendall(b"kept")
    assert live.recv(4) == b"kept"


def test_moving_to_every_interface_on_the_same_port(http: httpx.Client, echo: EchoServer) -> None:
    # 0.0.0.0:P overlaps the proxy's own 127.0.0.1:P: the real server stops, then binds.
    before = create(http, "wide", echo.address, listen="127.0.0.1:0")
    port = port_of(before["listen"])
    response = http.patch("/proxies/wide", json={"listen": f"0.0.0.0:{port}"})
    assert response.status_code == 200, response.text
    assert port_of(response.json()["listen"]) == port
    assert echoes(port)


@pytest.mark.usefixtures("embedded_only")
def test_a_failed_move_on_the_same_port_rebinds_the_old_address(
    http: httpx.Client, echo: EchoServer, connect: Callable[[int], socket.socket]
) -> None:
    before = create(http, "narrow", echo.address, listen="127.0.0.1:0")
    port = port_of(before["listen"])
    live = connect(port)
    # Another address of the loopback net holds the port: 0.0.0.0:P cannot be bound at all.
    with socket.create_server(("127.0.0.2", port)):
        response = http.patch("/proxies/narrow", json={"listen": f"0.0.0.0:{port}"})
        assert_error(response, 500)
        assert "address already in use" in response.json()["error"]
    assert http.get("/proxies/narrow").json() == before
    assert echoes(port)
    live.sendall(b"kept")
    assert live.recv(4) == b"kept"


@pytest.mark.usefixtures("embedded_only")
@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:65536", ":-5"])
def test_out_of_range_ports_are_400_everywhere(http: httpx.Client, listen: str) -> None:
    body = {"name": "far", "upstream": "127.0.0.1:9", "listen": listen}
    response = http.post("/proxies", json=body)
    assert_error(response, 400)
    assert "0-65535" in response.json()["error"]
    assert_error(http.post("/proxies", json={**body, "enabled": False}), 400)
    assert_error(http.post("/populate", json=[body]), 400)
    assert http.get("/proxies").json() == {}


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


@pytest.mark.usefixtures("embedded_only")
@pytest.mark.parametrize("bad", ["BUSY", "bad:addr:x", "127.0.0.1:99999"])
def test_populate_is_all_or_nothing(
    http: httpx.Client, echo: EchoServer, connect: Callable[[int], socket.socket], bad: str
) -> None:
    # The real server applies the items before the bad one and answers 500 (PopulateJson):
    # here nothing changes, and a proxy the batch would have replaced is back as it was.
    if bad == "BUSY":
        bad = busy_listen(http, echo)
    kept = create(http, "pa", echo.address, listen="127.0.0.1:0")
    http.post("/proxies/pa/toxics", json={"type": "noop"})
    kept = http.get("/proxies/pa").json()
    live = connect(port_of(kept["listen"]))
    before = http.get("/proxies").json()
    response = http.post(
        "/populate",
        json=[
            {"name": "pa", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0"},  # a replacement
            {"name": "pb", "upstream": echo.address, "listen": "127.0.0.1:0"},  # a new one
            {"name": "pc", "upstream": echo.address, "listen": bad},
        ],
    )
    assert response.status_code in (400, 500), response.text
    assert response.json()["proxies"] is None
    assert http.get("/proxies").json() == before
    live.sendall(b"pa")
    assert live.recv(2) == b"pa"
    assert echoes(port_of(kept["listen"]))


def test_populate_can_replace_a_proxy_on_its_own_port(http: httpx.Client, echo: EchoServer) -> None:
    first = create(http, "r", "127.0.0.1:9", listen="127.0.0.1:0")
    response = http.post(
        "/populate", json=[{"name": "r", "upstream": echo.address, "listen": first["listen"]}]
    )
    assert response.status_code == 201, response.text
    (after,) = response.json()["proxies"]
    assert (after["listen"], after["upstream"], after["enabled"]) == (
        first["listen"],
        echo.address,
        True,
    )
    assert echoes(port_of(first["listen"]))


def test_reset_goes_on_past_a_proxy_that_cannot_listen(
    http: httpx.Client, echo: EchoServer, toxiproxy_server: RunningServer
) -> None:
    off = create(http, "off", echo.address, listen="127.0.0.1:0")
    http.patch("/proxies/off", json={"enabled": False})
    create(http, "on", echo.address, listen="127.0.0.1:0")
    http.post("/proxies/on/toxics", json={"type": "noop"})
    with socket.create_server(("127.0.0.1", port_of(off["listen"]))):
        response = http.post("/reset")
        if toxiproxy_server.kind == "embedded":
            # The real server stops at the first failure (ResetState returns).
            assert_error(response, 500)
            assert "address already in use" in response.json()["error"]
            assert http.get("/proxies/on/toxics").json() == []
    assert http.post("/reset").status_code == 204
    assert http.get("/proxies/off").json()["enabled"] is True


# -- names and text ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "a/b", "sp ace", "q?x#y", "per%cent", "..x", "ünï"])
def test_every_accepted_name_is_addressable(
    http: httpx.Client, echo: EchoServer, name: str
) -> None:
    segment = quote(name, safe="")
    body = create(http, name, echo.address, listen="127.0.0.1:0")
    assert http.get(f"/proxies/{segment}").json() == body
    toxic = http.post(f"/proxies/{segment}/toxics", json={"type": "noop", "name": name})
    assert toxic.status_code == 200, toxic.text
    assert http.get(f"/proxies/{segment}/toxics/{segment}").json()["name"] == name
    patched = http.patch(f"/proxies/{segment}/toxics/{segment}", json={"toxicity": 0.5})
    assert patched.status_code == 200, patched.text
    assert http.delete(f"/proxies/{segment}/toxics/{segment}").status_code == 204
    assert http.get(f"/proxies/{segment}/toxics").json() == []
    assert http.delete(f"/proxies/{segment}").status_code == 204
    assert http.get("/proxies").json() == {}


@pytest.mark.usefixtures("embedded_only")
@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(http: httpx.Client, echo: EchoServer, name: str) -> None:
    # URL clients rewrite "." and ".." path segments (even %2E%2E: requests decodes it), so
    # such a proxy or toxic could never be reached again; the real server accepts them anyway.
    body = {"name": name, "upstream": echo.address, "listen": "127.0.0.1:0"}
    assert_error(http.post("/proxies", json=body), 400)
    assert_error(http.post("/populate", json=[body]), 400)
    create(http, "p", echo.address, listen="127.0.0.1:0")
    assert_error(http.post("/proxies/p/toxics", json={"type": "noop", "name": name}), 400)
    assert http.get("/proxies").json()["p"]["toxics"] == []


LONE_SURROGATE = b'"\\ud800"'  # the JSON text "\ud800": an escape Python decodes, UTF-8 cannot


@pytest.mark.usefixtures("embedded_only")
@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("POST", "/proxies", b'{"name": %s, "upstream": "127.0.0.1:9"}'),
        ("POST", "/proxies", b'{"name": "n", "upstream": %s}'),
        ("POST", "/proxies", b'{"name": "n", "upstream": "127.0.0.1:9", %s: 1}'),
        ("POST", "/populate", b'[{"name": %s, "upstream": "127.0.0.1:9"}]'),
        ("PATCH", "/proxies/s", b'{"upstream": %s}'),
        ("POST", "/proxies/s/toxics", b'{"type": "noop", "name": %s}'),
        ("POST", "/proxies/s/toxics", b'{"type": "noop", "stream": %s}'),
        ("PATCH", "/proxies/s/toxics/t", b'{"attributes": {"x": [%s]}}'),
    ],
)
def test_lone_surrogates_are_refused(
    http: httpx.Client, echo: EchoServer, method: str, path: str, template: bytes
) -> None:
    create(http, "s", echo.address, listen="127.0.0.1:0")
    http.post("/proxies/s/toxics", json={"type": "noop", "name": "t"})
    before = http.get("/proxies").json()
    response = http.request(method, path, content=template % LONE_SURROGATE)
    assert_error(response, 400)
    assert "surrogate" in response.json()["error"]
    assert http.get("/proxies").json() == before
    assert http.get("/metrics").status_code == 200


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_json_numbers_are_bad_bodies(
    http: httpx.Client, echo: EchoServer, literal: bytes
) -> None:
    # Go's decoder refuses these literals (they are not JSON); Python's would accept them.
    create(http, "n", echo.address, listen="127.0.0.1:0")
    response = http.post("/proxies/n/toxics", content=b'{"type": "noop", "toxicity": %s}' % literal)
    assert_error(response, 400)
    assert response.json()["error"].startswith("bad request body")


@pytest.mark.parametrize("content", [b"{", b'{"name": "x"}', b""])
def test_populate_bad_body(http: httpx.Client, content: bytes) -> None:
    response = http.post("/populate", content=content)
    assert response.status_code == 400
    assert "proxies" in response.json()
    assert_alive(http)


# -- streamharness extensions (the real server answers differently or not at all) ---------------


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
