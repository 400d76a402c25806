"""The admin API (``/_mock/...``) and the model list (``/v1/models``), as a route table.

Off the token's way: these routes inspect and steer the mock (the ledger of requests, rules,
the run-time config, a preview of an answer) while the chat handler (``chat.py``) serves the
tokens. :data:`ROUTES` maps each exact path to its methods' handlers and :data:`PREFIX_ROUTES`
the paths that end in an id; :func:`dispatch` picks one, or answers 404 or 405 the way OpenAI
does. Every handler gets the app and the :class:`AdminRequest` and raises
:class:`~mockllm.errors.MockError` for an error answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from mockllm.asgi import Receive, Scope, Send, header_text, read_body, send_empty, send_json
from mockllm.chat import build, prepare
from mockllm.config import apply_config_patch, config_json
from mockllm.errors import (
    InvalidJSON,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ShuttingDown,
    error_body,
    model_not_found,
)
from mockllm.generation import ChoicePlan
from mockllm.routes import FORMAT_PATHS
from mockllm.rules import parse_rules
from mockllm.strictjson import parse_json

if TYPE_CHECKING:
    from mockllm.app import MockApp

__all__ = [
    "MAX_WAIT_S",
    "PREFIX_ROUTES",
    "ROUTES",
    "AdminRequest",
    "Handler",
    "WaitArgs",
    "dispatch",
    "since_seq",
    "unless_client_leaves",
    "wait_args",
    "wait_timeout_body",
]

_MODEL_CREATED = 1721172741
_OLLAMA_MODIFIED_AT = "2024-07-16T23:32:21Z"  # the same instant as _MODEL_CREATED
#: Longest ``POST /_mock/requests/wait`` accepted, in seconds.
MAX_WAIT_S: Final = 300.0


@dataclass(frozen=True)
class AdminRequest:
    method: str
    path: str
    # the path's tail after a prefix route's prefix (a model or rule id); "" otherwise
    tail: str
    query: dict[str, str]
    scope: Scope
    receive: Receive
    send: Send

    async def json_body(self) -> Any:
        """The body as JSON; an empty body is ``{}``."""
        raw = await read_body(self.receive)
        if not raw.strip():
            return {}
        try:
            return parse_json(raw)
        except InvalidJSON as exc:
            if exc.syntax:
                raise InvalidJSON(
                    f"The request body is not valid JSON: {exc.message}", syntax=True
                ) from None
            raise


Handler = Callable[["MockApp", AdminRequest], Awaitable[None]]


def _model_object(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "mockllm"}


def since_seq(app: MockApp, raw: str | None) -> int | None:
    """A ledger position from ``since_id``: a sequence number or a request id."""
    if raw is None or raw == "":
        return None
    if raw.isdigit():
        return int(raw)
    seq = app.ledger.seq_of(raw)
    if seq is None:
        raise NotFound(f"No ledger entry with id {raw!r}.", param="since_id")
    return seq


async def list_models(app: MockApp, req: AdminRequest) -> None:
    data = [_model_object(m) for m in app.config.models]
    await send_json(req.send, 200, {"object": "list", "data": data})


async def ollama_tags(app: MockApp, req: AdminRequest) -> None:
    """Ollama's ``GET /api/tags``: the configured models as local models."""
    models = [
        {
            "name": model,
            "model": model,
            "modified_at": _OLLAMA_MODIFIED_AT,
            "size": 0,
            "digest": hashlib.sha256(model.encode()).hexdigest(),
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "mockllm",
                "families": ["mockllm"],
                "parameter_size": "0B",
                "quantization_level": "none",
            },
        }
        for model in app.config.models
    ]
    await send_json(req.send, 200, {"models": models})


async def get_model(app: MockApp, req: AdminRequest) -> None:
    model = req.tail
    if model not in app.config.models and not app.config.any_model:
        raise model_not_found(model)
    await send_json(req.send, 200, _model_object(model))


async def health(app: MockApp, req: AdminRequest) -> None:
    await send_json(req.send, 200, {"status": "ok"})


async def list_requests(app: MockApp, req: AdminRequest) -> None:
    entries = app.ledger.query(
        model=req.query.get("model"),
        outcome=req.query.get("outcome"),
        since=since_seq(app, req.query.get("since_id")),
    )
    await send_json(req.send, 200, {"requests": [e.to_json() for e in entries]})


async def clear_requests(app: MockApp, req: AdminRequest) -> None:
    app.ledger.clear()
    await send_empty(req.send)


@dataclass(frozen=True)
class WaitArgs:
    """A checked ``POST /_mock/requests/wait`` body."""

    count: int
    timeout: float
    model: str | None
    outcome: str | None
    since: str | None
    ended: bool


def wait_args(body: Any) -> WaitArgs:
    """Check a wait body; raises InvalidRequest saying what to fix."""
    if not isinstance(body, dict):
        raise InvalidRequest("The wait body must be a JSON object.")
    count = body.get("count", 1)
    timeout = body.get("timeout", 10.0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InvalidRequest("'count' must be an integer >= 0.", param="count")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 <= timeout <= MAX_WAIT_S
    ):
        raise InvalidRequest(
            f"'timeout' must be a number of seconds from 0 to {MAX_WAIT_S:g}; "
            "to wait longer, wait again.",
            param="timeout",
        )
    for name in ("outcome", "model"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidRequest(f"'{name}' must be a string or null.", param=name)
    since = body.get("since_id")
    return WaitArgs(
        count,
        float(timeout),
        body.get("model"),
        body.get("outcome"),
        None if since is None else str(since),
        bool(body.get("ended", False)),
    )


def wait_timeout_body(args: WaitArgs, current: list[dict[str, Any]]) -> dict[str, Any]:
    """The 408 of a wait that timed out, with the requests that match so far."""
    error = error_body(
        f"Timed out after {args.timeout:g} s waiting for {args.count} matching request(s).",
        "timeout",
        code="wait_timeout",
    )
    return {**error, "requests": current}


async def wait_for_requests(app: MockApp, req: AdminRequest) -> None:
    args = wait_args(await req.json_body())
    waiting = asyncio.ensure_future(
        app.ledger.wait(
            args.count,
            args.timeout,
            model=args.model,
            outcome=args.outcome,
            since=since_seq(app, args.since),
            ended=args.ended,
        )
    )
    app.track(waiting)
    if not await unless_client_leaves(req.receive, waiting):
        return  # nobody to answer; the wait is over
    if waiting.cancelled():
        raise ShuttingDown(
            "mockllm is shutting down; the wait ended early.", code="server_shutdown"
        )
    found = waiting.result()
    if found is None:
        current = app.ledger.query(model=args.model, outcome=args.outcome)
        body = wait_timeout_body(args, [e.to_json() for e in current])
        await send_json(req.send, 408, body)
        return
    await send_json(req.send, 200, {"requests": [e.to_json() for e in found]})


async def unless_client_leaves(receive: Receive, work: asyncio.Future[Any]) -> bool:
    """Wait for ``work``; if the client disconnects first, cancel it and return False."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    gone = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        left = gone.done()
    finally:
        # Also when this handler is cancelled itself: neither may outlive it.
        gone.cancel()
        if not work.done():
            work.cancel()
    return not left


async def stats(app: MockApp, req: AdminRequest) -> None:
    await send_json(
        req.send,
        200,
        {
            "active_streams": app.active_streams,
            "waiters": app.ledger.waiting,
            "ledger_entries": len(app.ledger),
            "ledger_size": app.ledger.max_entries,
        },
    )


def _describe_choice(choice: ChoicePlan) -> dict[str, Any]:
    call = choice.tool_call
    return {
        "index": choice.index,
        "text": "" if call else choice.text,
        "tokens": list(choice.tokens),
        "finish_reason": choice.finish_reason,
        "times": list(choice.times),
        "tool_call": {"id": call[0], "name": call[1], "arguments": call[2]} if call else None,
    }


async def preview(app: MockApp, req: AdminRequest) -> None:
    """What a chat request would get, without counting or recording it."""
    prepared = await prepare(app, req.scope, await read_body(req.receive), commit=False)
    plan, _ = await build(app.config.seed, prepared, None)
    control = prepared.control
    choices = [_describe_choice(c) for c in plan.choices]
    await send_json(
        req.send,
        200,
        {
            **{k: choices[0][k] for k in ("text", "tokens", "finish_reason", "tool_call")},
            "choices": choices,
            "usage": plan.usage,
            "profile": control.profile,
            "timing": {
                "ttft_ms": control.timing.ttft_ms,
                "itl_ms": control.timing.itl_ms,
                "jitter_ms": control.timing.jitter_ms,
                "tokens_per_chunk": control.timing.tokens_per_chunk,
            },
            "faults": list(control.faults.names),
            "rule_id": control.rule_id,
            "near_miss": prepared.near_miss,
        },
    )


async def list_rules(app: MockApp, req: AdminRequest) -> None:
    await send_json(req.send, 200, {"rules": app.rules.to_json()})


async def add_rules(app: MockApp, req: AdminRequest) -> None:
    raw = await req.json_body()
    created = app.rules.add(parse_rules(raw, first_index=app.rules.next_index()))
    await send_json(req.send, 201, {"rules": [r.to_json() for r in created]})


async def clear_rules(app: MockApp, req: AdminRequest) -> None:
    app.rules.clear()
    await send_empty(req.send)


async def delete_rule(app: MockApp, req: AdminRequest) -> None:
    rule_id = req.tail
    if not app.rules.remove(rule_id):
        raise NotFound(f"No rule with id {rule_id!r}.", param="id", code="rule_not_found")
    await send_empty(req.send)


async def get_config(app: MockApp, req: AdminRequest) -> None:
    await send_json(req.send, 200, config_json(app.config))


async def patch_config(app: MockApp, req: AdminRequest) -> None:
    apply_config_patch(app.config, await req.json_body())
    await send_json(req.send, 200, config_json(app.config))


async def reset(app: MockApp, req: AdminRequest) -> None:
    app.reset()
    await send_json(req.send, 200, {"status": "reset"})


ROUTES: dict[str, dict[str, Handler]] = {
    # POST on a format's path is the chat handler's, which the app calls before this table
    # (routes.py); the entries are here so that another method gets a 405.
    **{path: {} for path in FORMAT_PATHS},
    "/v1/models": {"GET": list_models},
    "/api/tags": {"GET": ollama_tags},
    "/_mock/health": {"GET": health},
    "/_mock/stats": {"GET": stats},
    "/_mock/requests": {"GET": list_requests, "DELETE": clear_requests},
    "/_mock/requests/wait": {"POST": wait_for_requests},
    "/_mock/preview": {"POST": preview},
    "/_mock/rules": {"GET": list_rules, "POST": add_rules, "DELETE": clear_rules},
    "/_mock/config": {"GET": get_config, "PATCH": patch_config},
    "/_mock/reset": {"POST": reset},
}
# Tried in order when no exact path matched; the rest of the path is the request's ``tail``.
PREFIX_ROUTES: tuple[tuple[str, dict[str, Handler]], ...] = (
    ("/v1/models/", {"GET": get_model}),
    ("/_mock/rules/", {"DELETE": delete_rule}),
)


async def dispatch(app: MockApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Route one HTTP request that is not a chat completion; raises MockError."""
    path: str = scope["path"]
    method: str = scope["method"]
    cluster = app.cluster
    if cluster is not None:
        # Several workers: the ledger, rules and config are the whole mock's (cluster.py).
        req = AdminRequest(method, path, "", _query(scope), scope, receive, send)
        if await cluster.dispatch(app, req):
            return
    tail = ""
    methods = ROUTES.get(path)
    if methods is None:
        for prefix, by_method in PREFIX_ROUTES:
            if path.startswith(prefix):
                methods, tail = by_method, path[len(prefix) :]
                break
        else:
            raise NotFound(f"Invalid URL ({method} {path})", code="unknown_url")
    handler = methods.get(method)
    if handler is None:
        raise MethodNotAllowed(f"Method {method} not allowed on {path}.")
    await handler(app, AdminRequest(method, path, tail, _query(scope), scope, receive, send))


def _query(scope: Scope) -> dict[str, str]:
    query_string = header_text(scope.get("query_string", b""))
    return {k: v[-1] for k, v in parse_qs(query_string).items()}
