"""Several workers, one mock: the admin API of ``--workers N`` answers for every worker.

Off the token's way. Each worker serves the public port (``workers.py``) and a private
loopback port of its own that the others know. A chat request never leaves its worker: its
sequence number and rule counters are the shared memory's (``shared.py``). An admin request
that reads or changes the whole mock (the ledger, rules, config, reset, stats) is answered by
worker 0, the coordinator: another worker forwards it there unchanged. The coordinator asks
every worker's private port for its part (a request carrying :data:`LOCAL_HEADER` is
answered by that worker alone) and merges the ledger in sequence order; a change is checked
first, then applied by every worker before the admin call answers. Changes go one at a time
(an asyncio lock in the coordinator), so every worker sees them in the same order and gives a
new rule the counters' slot the coordinator chose and zeroed.

A wait across workers is a loop of a merged query and long polls: each worker answers
``/_mock/internal/changed`` once its ledger changed past the version the query saw, so
nothing polls on a timer and no arrival between the query and the poll is missed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx

from mockllm import admin
from mockllm.admin import AdminRequest, WaitArgs
from mockllm.asgi import read_body, send_bytes, send_empty, send_json
from mockllm.config import apply_config_patch, config_json
from mockllm.errors import InvalidRequest, MockError, NotFound, ShuttingDown
from mockllm.rules import parse_rules
from mockllm.shared import SharedCounters

if TYPE_CHECKING:
    from mockllm.app import MockApp

__all__ = ["LOCAL_HEADER", "Cluster"]

#: Marks a coordinator's request to one worker's private port: answer for yourself only.
LOCAL_HEADER: Final = "x-mockllm-worker-local"
_LOCAL_KEY: Final = LOCAL_HEADER.encode()
_SHUTDOWN: Final = "mockllm is shutting down; the wait ended early."


class WorkerUnreachable(ShuttingDown):
    """A worker did not answer the coordinator: it died, and the mock is stopping."""


@dataclass(eq=False)
class Cluster:
    """This worker's place among the workers."""

    index: int
    # every worker's private loopback port, by worker index
    ports: tuple[int, ...]
    counters: SharedCounters
    host: str = "127.0.0.1"
    _clients: dict[int, httpx.AsyncClient] = field(default_factory=dict)
    _changing: asyncio.Lock | None = None
    # waits across workers in progress (the coordinator's; ``GET /_mock/stats``)
    waiting: int = 0

    @property
    def workers(self) -> int:
        return len(self.ports)

    def is_private(self, req: AdminRequest) -> bool:
        server = req.scope.get("server")
        return server is not None and server[1] == self.ports[self.index]

    async def dispatch(self, app: MockApp, req: AdminRequest) -> bool:
        """Answer ``req`` if it is the cluster's to answer; False leaves it to this worker's
        own admin route table."""
        if self.is_private(req) and any(k == _LOCAL_KEY for k, _ in req.scope["headers"]):
            internal = _INTERNAL.get((req.method, req.path))
            if internal is None:
                return False
            await internal(app, req)
            return True
        found = _coordinated(req.method, req.path)
        if found is None:
            return False
        handler, tail = found
        req = dataclasses.replace(req, tail=tail)
        if self.index == 0:
            await handler(self, app, req)
        else:
            await self._forward(app, req)
        return True

    # -- talking to the other workers -----------------------------------------------------

    def _client(self, index: int) -> httpx.AsyncClient:
        client = self._clients.get(index)
        if client is None:
            client = httpx.AsyncClient(
                base_url=f"http://{self.host}:{self.ports[index]}",
                # A wait's long poll takes as long as the wait; the workers end it themselves.
                timeout=httpx.Timeout(None, connect=10.0),
                # Every open wait holds a connection to each worker: a pool limit would let
                # many waits starve every other admin call.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=32),
                trust_env=False,  # never through a proxy from the environment
            )
            self._clients[index] = client
        return client

    async def _request(
        self,
        index: int,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        local: bool = True,
    ) -> httpx.Response:
        headers = {LOCAL_HEADER: "1"} if local else {}
        if content is not None or json is not None:
            headers["content-type"] = "application/json"
        try:
            return await self._client(index).request(
                method, path, params=params, content=content, json=json, headers=headers
            )
        except httpx.TransportError as exc:
            raise WorkerUnreachable(
                f"mockllm worker {index} did not answer ({exc!r}); a mock with several "
                "workers stops when one of them dies: see its output, then start it again.",
                code="worker_unreachable",
            ) from None

    async def call(
        self,
        index: int,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        """A worker's own answer to an admin request, as JSON (None for an empty body)."""
        response = await self._request(index, method, path, params=params, json=json)
        if response.status_code >= 400:
            raise MockError(
                f"mockllm worker {index} refused {method} {path} ({response.status_code}): "
                f"{response.text[:500]}",
                code="worker_error",
            )
        return response.json() if response.content else None

    async def every(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> list[Any]:
        """:meth:`call` on every worker at once, answers by worker index."""
        return list(
            await asyncio.gather(
                *(self.call(i, method, path, params=params, json=json) for i in range(self.workers))
            )
        )

    async def _forward(self, app: MockApp, req: AdminRequest) -> None:
        """Hand a whole-mock admin request to the coordinator and pass its answer back."""
        body = await read_body(req.receive)
        call = asyncio.ensure_future(
            self._request(
                0, req.method, req.path, params=req.query, content=body or None, local=False
            )
        )
        app.track(call)
        if not await admin.unless_client_leaves(req.receive, call):
            return
        if call.cancelled():
            raise ShuttingDown(_SHUTDOWN, code="server_shutdown")
        response = call.result()
        if response.status_code == 204:
            await send_empty(req.send)
            return
        await send_bytes(req.send, response.status_code, response.content)

    # -- the whole ledger ------------------------------------------------------------------

    async def since(self, raw: str | None) -> int | None:
        """:func:`admin.since_seq` over every worker's ledger."""
        if raw is None or raw == "":
            return None
        if raw.isdigit():
            return int(raw)
        for answer in await self.every("GET", "/_mock/internal/find", params={"id": raw}):
            if answer["seq"] is not None:
                return int(answer["seq"])
        raise NotFound(f"No ledger entry with id {raw!r}.", param="since_id")

    async def entries(self, params: dict[str, str]) -> tuple[list[dict[str, Any]], list[int]]:
        """Every worker's matching entries in sequence order, and each worker's version."""
        answers = await self.every("GET", "/_mock/internal/requests", params=params)
        merged = sorted((e for a in answers for e in a["requests"]), key=lambda e: e["seq"])
        return merged, [int(a["version"]) for a in answers]

    async def wait(self, args: WaitArgs, params: dict[str, str]) -> list[dict[str, Any]] | None:
        """:meth:`Ledger.wait` across workers: the entries once ``args.count`` match, or None
        after ``args.timeout``."""
        self.waiting += 1
        try:
            return await self._wait(args, params)
        finally:
            self.waiting -= 1

    async def _wait(self, args: WaitArgs, params: dict[str, str]) -> list[dict[str, Any]] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout
        while True:
            found, versions = await self.entries(params)
            if len(found) >= args.count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            polls = [
                asyncio.ensure_future(
                    self.call(
                        i,
                        "POST",
                        "/_mock/internal/changed",
                        json={"after": version, "timeout": remaining},
                    )
                )
                for i, version in enumerate(versions)
            ]
            try:
                done, _ = await asyncio.wait(polls, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for poll in polls:
                    poll.cancel()
            for poll in done:
                poll.result()  # a worker that did not answer ends the wait with its error

    async def change(self, op: dict[str, Any], before: Callable[[], None] | None = None) -> None:
        """Apply ``op`` (``/_mock/internal/apply``) on every worker, one change at a time;
        ``before`` runs first, under the same lock (the checks and slot choice)."""
        if self._changing is None:
            self._changing = asyncio.Lock()
        async with self._changing:
            if before is not None:
                before()
            await self.every("POST", "/_mock/internal/apply", json=op)


def _filters(model: str | None, outcome: str | None, since: int | None) -> dict[str, str]:
    params = {"model": model, "outcome": outcome, "since": None if since is None else str(since)}
    return {k: v for k, v in params.items() if v is not None}


# -- the coordinator's handlers (worker 0) ---------------------------------------------------

Coordinated = Callable[[Cluster, "MockApp", AdminRequest], Awaitable[None]]


async def _list_requests(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    since = await cluster.since(req.query.get("since_id"))
    found, _ = await cluster.entries(
        _filters(req.query.get("model"), req.query.get("outcome"), since)
    )
    await send_json(req.send, 200, {"requests": found})


async def _clear_requests(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    await cluster.change({"op": "clear_requests"})
    await send_empty(req.send)


async def _wait(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    args = admin.wait_args(await req.json_body())
    params = _filters(args.model, args.outcome, await cluster.since(args.since))
    if args.ended:
        params["ended"] = "1"
    waiting = asyncio.ensure_future(cluster.wait(args, params))
    app.track(waiting)
    if not await admin.unless_client_leaves(req.receive, waiting):
        return
    if waiting.cancelled():
        raise ShuttingDown(_SHUTDOWN, code="server_shutdown")
    found = waiting.result()
    if found is None:
        current, _ = await cluster.entries(_filters(args.model, args.outcome, None))
        await send_json(req.send, 408, admin.wait_timeout_body(args, current))
        return
    await send_json(req.send, 200, {"requests": found})


async def _stats(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    answers = await cluster.every("GET", "/_mock/stats")
    keys = ("active_streams", "waiters", "ledger_entries", "ledger_size")
    total = {key: sum(int(a[key]) for a in answers) for key in keys}
    total["waiters"] += cluster.waiting
    await send_json(req.send, 200, {**total, "workers": cluster.workers})


async def _add_rules(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    raw = await req.json_body()
    op: dict[str, Any] = {"op": "add_rules", "raw": raw}
    created = []

    def check() -> None:
        first = app.rules.next_index()
        rules = parse_rules(raw, first_index=first)
        slots = app.rules.free_slots(len(rules))
        app.rules.check_new(rules)
        # Zeroed before any worker has the rule: a count made meanwhile is never lost.
        cluster.counters.zero_rules(slots)
        op.update(first_index=first, slots=slots)
        created.extend(rules)

    await cluster.change(op, check)
    await send_json(req.send, 201, {"rules": [r.to_json() for r in created]})


async def _clear_rules(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    await cluster.change({"op": "clear_rules"})
    await send_empty(req.send)


async def _delete_rule(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    rule_id = req.tail

    def check() -> None:
        if all(rule.id != rule_id for rule in app.rules.rules):
            raise NotFound(f"No rule with id {rule_id!r}.", param="id", code="rule_not_found")

    await cluster.change({"op": "delete_rule", "id": rule_id}, check)
    await send_empty(req.send)


async def _patch_config(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    patch = await req.json_body()

    def check() -> None:
        apply_config_patch(dataclasses.replace(app.config), patch)

    await cluster.change({"op": "patch_config", "patch": patch}, check)
    await send_json(req.send, 200, config_json(app.config))


async def _reset(cluster: Cluster, app: MockApp, req: AdminRequest) -> None:
    await cluster.change({"op": "reset"})
    # After every worker dropped its rules: no count made before the reset survives it.
    cluster.counters.zero_rules()
    cluster.counters.sequence().reset()
    await send_json(req.send, 200, {"status": "reset"})


_COORDINATED: Final[dict[tuple[str, str], Coordinated]] = {
    ("GET", "/_mock/requests"): _list_requests,
    ("DELETE", "/_mock/requests"): _clear_requests,
    ("POST", "/_mock/requests/wait"): _wait,
    ("GET", "/_mock/stats"): _stats,
    ("POST", "/_mock/rules"): _add_rules,
    ("DELETE", "/_mock/rules"): _clear_rules,
    ("PATCH", "/_mock/config"): _patch_config,
    ("POST", "/_mock/reset"): _reset,
}
_RULE_PREFIX: Final = "/_mock/rules/"


def _coordinated(method: str, path: str) -> tuple[Coordinated, str] | None:
    handler = _COORDINATED.get((method, path))
    if handler is not None:
        return handler, ""
    if method == "DELETE" and path.startswith(_RULE_PREFIX):
        return _delete_rule, path[len(_RULE_PREFIX) :]
    return None


# -- what each worker answers for itself (its private port, LOCAL_HEADER) ---------------------

Internal = Callable[["MockApp", AdminRequest], Awaitable[None]]


async def _own_requests(app: MockApp, req: AdminRequest) -> None:
    query = req.query
    since = query.get("since")
    entries = app.ledger.query(
        model=query.get("model"),
        outcome=query.get("outcome"),
        since=int(since) if since else None,
        ended=query.get("ended") == "1",
    )
    # The version and the entries come from the same moment (no await between them).
    payload = {"version": app.ledger.version, "requests": [e.to_json() for e in entries]}
    await send_json(req.send, 200, payload)


async def _own_find(app: MockApp, req: AdminRequest) -> None:
    await send_json(req.send, 200, {"seq": app.ledger.seq_of(req.query.get("id", ""))})


async def _own_changed(app: MockApp, req: AdminRequest) -> None:
    body = await req.json_body()
    work = asyncio.ensure_future(app.ledger.changed(int(body["after"]), float(body["timeout"])))
    app.track(work)
    if not await admin.unless_client_leaves(req.receive, work):
        return  # the coordinator's wait is over
    if work.cancelled():
        raise ShuttingDown(_SHUTDOWN, code="server_shutdown")
    await send_json(req.send, 200, {"version": work.result()})


async def _own_apply(app: MockApp, req: AdminRequest) -> None:
    body = await req.json_body()
    op = body.get("op")
    if op == "add_rules":
        rules = parse_rules(body["raw"], first_index=int(body["first_index"]))
        app.rules.add(rules, [int(slot) for slot in body["slots"]])
    elif op == "clear_rules":
        app.rules.clear()
    elif op == "delete_rule":
        app.rules.remove(str(body["id"]))
    elif op == "patch_config":
        apply_config_patch(app.config, body["patch"])
    elif op == "clear_requests":
        app.ledger.clear()
    elif op == "reset":
        app.reset()
    else:
        raise InvalidRequest(f"Unknown change {op!r}.", param="op")
    await send_empty(req.send)


_INTERNAL: Final[dict[tuple[str, str], Internal]] = {
    ("GET", "/_mock/internal/requests"): _own_requests,
    ("GET", "/_mock/internal/find"): _own_find,
    ("POST", "/_mock/internal/changed"): _own_changed,
    ("POST", "/_mock/internal/apply"): _own_apply,
}
