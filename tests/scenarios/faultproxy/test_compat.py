"""What a real Toxiproxy 2.12 accepts and refuses, request by request, and what we answer.

Each row is one request and the status it gets, with the Toxiproxy source that decides it
(github.com/Shopify/toxiproxy: ``api.go``, ``proxy.go``, ``proxy_collection.go``,
``toxic_collection.go``, ``toxics/*.go``). The real server validates little: it decodes the
body (Go's ``encoding/json``), checks the required fields, the stream and the toxic type, and
hands every integer to the toxic as it is. Where our answer differs on purpose, ``real`` says
what the real server answers; ``None`` marks input that crashes the real server (a panic in a
toxic goroutine kills the process), which we refuse with a 400 instead.

Run with ``--toxiproxy-url`` and the same rows are checked against the real server's answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from scenarios.faultproxy.client import RunningServer
from tests.scenarios.faultproxy.helpers import EchoServer

INT64_MAX = 2**63 - 1
#: ``Row.real`` when the real server answers what we answer.
SAME = 0


@dataclass(frozen=True)
class Row:
    why: str
    method: str
    path: str
    body: Any
    status: int
    #: The real server's status where ours differs on purpose; None: it crashes on this.
    real: int | None = SAME

    def expected(self, embedded: bool) -> int | None:
        return self.status if embedded or self.real == SAME else self.real


def proxy(**fields: Any) -> dict[str, Any]:
    return {"name": "n", "upstream": "127.0.0.1:9", "listen": "127.0.0.1:0", **fields}


def toxic(toxic_type: str, **attributes: Any) -> dict[str, Any]:
    return {"type": toxic_type, "name": "new", "attributes": attributes}


TOXICS = "/proxies/c/toxics"

ROWS = [
    # -- POST /proxies: api.go ProxyCreate, then ProxyCollection.Add -> proxy.Start -----------
    Row("name and upstream are all it requires", "POST", "/proxies", proxy(), 201),
    Row(
        "upstream is only dialled per client (proxy.go server)",
        "POST",
        "/proxies",
        proxy(upstream="nohost"),
        201,
    ),
    Row(
        "... so a bad upstream port is accepted too",
        "POST",
        "/proxies",
        proxy(upstream="127.0.0.1:99999"),
        201,
    ),
    Row(
        "Go's parsePort reads an empty port as 0",
        "POST",
        "/proxies",
        proxy(listen="127.0.0.1:"),
        201,
    ),
    Row(
        "keys match case-insensitively",
        "POST",
        "/proxies",
        {"Name": "n", "UPSTREAM": "127.0.0.1:9", "Listen": "127.0.0.1:0"},
        201,
    ),
    Row("null keeps the default", "POST", "/proxies", proxy(enabled=None), 201),
    Row("missing name (checked before upstream)", "POST", "/proxies", {"upstream": "x:1"}, 400),
    Row("missing upstream", "POST", "/proxies", {"name": "n"}, 400),
    Row("wrong JSON type", "POST", "/proxies", proxy(enabled="yes"), 400),
    Row("duplicate name: ErrProxyAlreadyExists", "POST", "/proxies", proxy(name="c"), 409),
    Row(
        "net.Listen error: a plain error, i.e. 500",
        "POST",
        "/proxies",
        proxy(listen="bad:addr:x"),
        500,
    ),
    Row("no port: net.Listen error", "POST", "/proxies", proxy(listen="127.0.0.1"), 500),
    Row(
        "unresolvable host: net.Listen error",
        "POST",
        "/proxies",
        proxy(listen="nosuchhost.invalid:0"),
        500,
    ),
    Row(
        "port out of range: 400 here, Go's 'invalid port' is a 500",
        "POST",
        "/proxies",
        proxy(listen="127.0.0.1:99999"),
        400,
        real=500,
    ),
    Row(
        "a disabled proxy's listen is checked too (Go stores it unchecked)",
        "POST",
        "/proxies",
        proxy(listen="bad:addr:x", enabled=False),
        500,
        real=201,
    ),
    Row(
        "'.' cannot be a URL path segment (Go accepts it, then cannot route to it)",
        "POST",
        "/proxies",
        proxy(name="."),
        400,
        real=201,
    ),
    # -- PATCH /proxies/{p}: api.go ProxyUpdate -> proxy.Update -> proxy.Differs ---------------
    Row("empty update", "PATCH", "/proxies/c", {}, 200),
    Row(
        "upstream is not parsed (Differs compares strings)",
        "PATCH",
        "/proxies/c",
        {"upstream": "nohost"},
        200,
    ),
    Row(
        "net.ResolveTCPAddr error in Differs: 500, nothing stopped",
        "PATCH",
        "/proxies/c",
        {"listen": "bad:addr:x"},
        500,
    ),
    Row("wrong JSON type", "PATCH", "/proxies/c", {"enabled": 1}, 400),
    Row("unknown proxy: ErrProxyNotFound", "PATCH", "/proxies/nope", {}, 404),
    # -- POST /proxies/{p}/toxics: toxic_collection.go AddToxicJson -----------------------------
    Row(
        "negative latency: the sleep is negative, delivery at once",
        "POST",
        TOXICS,
        toxic("latency", latency=-1),
        200,
    ),
    Row(
        "negative jitter: only jitter > 0 draws",
        "POST",
        TOXICS,
        toxic("latency", latency=10, jitter=-5),
        200,
    ),
    Row("latency for ever", "POST", TOXICS, toxic("latency", latency=INT64_MAX), 200),
    Row(
        "jitter >= 2^62: rand.Int63n(2*jitter) overflows and panics",
        "POST",
        TOXICS,
        toxic("latency", jitter=2**62),
        400,
        real=None,
    ),
    Row(
        "rate 0: slices of 0 bytes for ever (a stall)",
        "POST",
        TOXICS,
        toxic("bandwidth", rate=0),
        200,
    ),
    Row(
        "rate < 0: p.Data[:rate*100] panics",
        "POST",
        TOXICS,
        toxic("bandwidth", rate=-1),
        400,
        real=None,
    ),
    Row(
        "negative slow_close delay: closes at once",
        "POST",
        TOXICS,
        toxic("slow_close", delay=-1),
        200,
    ),
    Row(
        "negative timeout: timeout > 0 is false, silent like 0",
        "POST",
        TOXICS,
        toxic("timeout", timeout=-1),
        200,
    ),
    Row(
        "negative reset_peer timeout: time.After fires at once",
        "POST",
        TOXICS,
        toxic("reset_peer", timeout=-1),
        200,
    ),
    Row(
        "negative limit_data: closes on the first data",
        "POST",
        TOXICS,
        toxic("limit_data", bytes=-1),
        200,
    ),
    Row(
        "slicer variation == average: halves stay inside the chunk",
        "POST",
        TOXICS,
        toxic("slicer", average_size=10, size_variation=10),
        200,
    ),
    Row(
        "slicer variation == average + 1: still inside",
        "POST",
        TOXICS,
        toxic("slicer", average_size=10, size_variation=11),
        200,
    ),
    Row(
        "slicer average 0, variation 1: 1-byte pieces",
        "POST",
        TOXICS,
        toxic("slicer", average_size=0, size_variation=1),
        200,
    ),
    Row(
        "slicer negative variation: no random part",
        "POST",
        TOXICS,
        toxic("slicer", average_size=10, size_variation=-5),
        200,
    ),
    Row(
        "slicer negative delay: no wait",
        "POST",
        TOXICS,
        toxic("slicer", average_size=10, delay=-1),
        200,
    ),
    Row(
        "slicer average 0: chunk() recurses for ever on a 1-byte piece",
        "POST",
        TOXICS,
        toxic("slicer"),
        400,
        real=None,
    ),
    Row(
        "slicer variation > average + 1: a cut falls outside the chunk, slice panic",
        "POST",
        TOXICS,
        toxic("slicer", average_size=10, size_variation=12),
        400,
        real=None,
    ),
    Row(
        "slicer average + variation < 1: recurses for ever",
        "POST",
        TOXICS,
        toxic("slicer", average_size=1, size_variation=-1),
        400,
        real=None,
    ),
    Row(
        "toxicity above 1: stub.Run draws rand.Float32() < toxicity, always on",
        "POST",
        TOXICS,
        {"type": "noop", "toxicity": 1.5},
        200,
    ),
    Row("toxicity below 0: never on", "POST", TOXICS, {"type": "noop", "toxicity": -0.1}, 200),
    Row(
        "toxicity beyond float32: Go's decoder refuses it",
        "POST",
        TOXICS,
        {"type": "noop", "toxicity": 1e39},
        400,
    ),
    Row(
        "stream is matched case-insensitively (stream.ParseDirection)",
        "POST",
        TOXICS,
        {"type": "noop", "stream": "UPSTREAM"},
        200,
    ),
    Row("ErrInvalidStream", "POST", TOXICS, {"type": "noop", "stream": "sideways"}, 400),
    Row("ErrInvalidToxicType", "POST", TOXICS, {"type": "nope"}, 400),
    Row("names are free text", "POST", TOXICS, {"type": "noop", "name": "../../x"}, 200),
    Row("unknown attributes are ignored", "POST", TOXICS, toxic("noop", foo=1), 200),
    Row(
        "integer attributes must be JSON integers",
        "POST",
        TOXICS,
        toxic("latency", latency="1"),
        400,
    ),
    Row(
        "ErrToxicAlreadyExists (names unique across streams)",
        "POST",
        TOXICS,
        {"type": "noop", "name": "t", "stream": "upstream"},
        409,
    ),
    # -- PATCH /proxies/{p}/toxics/{t}: toxic_collection.go UpdateToxicJson ---------------------
    Row("toxicity above 1 on update", "PATCH", f"{TOXICS}/t", {"toxicity": 2}, 200),
    Row("negative latency on update", "PATCH", f"{TOXICS}/t", {"attributes": {"latency": -1}}, 200),
    Row(
        "crashing jitter on update",
        "PATCH",
        f"{TOXICS}/t",
        {"attributes": {"jitter": 2**62}},
        400,
        real=None,
    ),
    Row("ErrToxicNotFound", "PATCH", f"{TOXICS}/nope", {}, 404),
    # -- POST /populate: proxy_collection.go PopulateJson -------------------------------------
    Row("populate: upstream unchecked", "POST", "/populate", [proxy(upstream="nohost")], 201),
    Row(
        "populate: missing field, nothing applied",
        "POST",
        "/populate",
        [proxy(), {"name": "x"}],
        400,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.why for row in ROWS])
def test_request_gets_toxiproxy_status(
    http: httpx.Client, echo: EchoServer, toxiproxy_server: RunningServer, row: Row
) -> None:
    expected = row.expected(toxiproxy_server.kind == "embedded")
    if expected is None:
        pytest.skip("the real server crashes on this input")
    created = http.post("/proxies", json={"name": "c", "upstream": echo.address})
    assert created.status_code == 201, created.text
    added = http.post(TOXICS, json={"type": "latency", "name": "t"})
    assert added.status_code == 200, added.text
    before = http.get("/proxies").json()
    response = http.request(row.method, row.path, json=row.body)
    assert response.status_code == expected, response.text
    if expected >= 400:
        assert response.json()["error"]
        assert http.get("/proxies").json() == before, "a refused request changed something"
