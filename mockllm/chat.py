"""The chat handler: a generation request in any wire format, from its bytes to a running answer.

On a token's way this is the first step. The app has picked the request's format
(``routes.py``; ``POST /v1/chat/completions`` is :data:`~mockllm.formats.chat_completions.CHAT`).
The body is read and parsed into the one internal request (the format's ``parse``), the
request's control is resolved (server config < rule < headers and metadata < directive,
``control.py``), the request is entered in the ledger, and the answer's plan and
:class:`~mockllm.generation.Script` are made (``generation.py``: the events' bytes and due
times, built as the stream plays, a slice ahead of its schedule; a large non-streamed body or
a long given text in a worker thread). ``respond.py`` then writes the script; the disconnect
watch here (started once the answer first waits) cancels that the moment the client leaves.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from mockllm.asgi import Headers, Message, Receive, Scope, Send, header_text, read_body, send_json
from mockllm.control import (
    Control,
    extract_directives,
    header_overrides,
    metadata_overrides,
    resolve,
)
from mockllm.conversation import summarize
from mockllm.errors import MockError, ShuttingDown, model_not_found
from mockllm.formats.base import EventScript, Format
from mockllm.formats.chat_completions import CHAT
from mockllm.generation import (
    Body,
    Plan,
    Script,
    base_seed,
    body_script,
    build_plan,
    completion_id,
    stream_script,
    tokens_built_up_front,
)
from mockllm.ledger import Entry
from mockllm.redact import redact_headers
from mockllm.request import ChatRequest, last_user_text, parse_body
from mockllm.respond import (
    is_shutdown,
    status_fault,
    uncancel_current,
    wait_until,
    write_body,
    write_stream,
)
from mockllm.strictjson import parse_json

if TYPE_CHECKING:
    from mockllm.app import MockApp

__all__ = ["CHAT_PATH", "Prepared", "build", "handle_chat", "prepare"]

CHAT_PATH = "/v1/chat/completions"
# Answers larger than this are built in a worker thread (see build).
_BUILD_INLINE_MAX_TOKENS = 4096
# Base seeds of recent small bodies (see prepare).
_SEEDS_BODY_MAX = 8192
_SEEDS_MAX = 1024
_base_seeds: dict[tuple[bytes, int, int | None, bool, Format], int] = {}
# Rule matching whose worst case (RuleBook.match_cost, characters x RE2 instructions, about
# 7 ns each) is above this runs in a worker thread: at most ~5 ms on the event loop.
_MATCH_INLINE_MAX_COST = 700_000


class Prepared(NamedTuple):
    """A chat request understood, before its answer is built."""

    body: Any
    request: ChatRequest
    control: Control
    # the request's messages with any directive stripped
    messages: tuple[dict[str, Any], ...]
    # 0 when nothing was counted or recorded (a preview)
    sequence: int
    # generation.base_seed: what the answer's content and id derive from
    base: int
    # no rule answered while rules exist: the closest rule and why (RuleBook.near_miss)
    near_miss: str | None = None
    # the wire format of the request and its answer
    format: Format = CHAT


async def prepare(
    app: MockApp,
    scope: Scope,
    raw: bytes,
    *,
    commit: bool,
    headers: list[tuple[str, str]] | None = None,
    fmt: Format = CHAT,
) -> Prepared:
    """Everything about a chat request but building the answer; raises MockError.

    With ``commit`` false nothing is counted or recorded (the preview): no rule's counter moves
    and no sequence number is taken.
    """
    config = app.config
    body = parse_body(raw)
    request = fmt.parse(body, scope["path"])
    if headers is None:
        headers = decoded_headers(scope)
    # The request's ``metadata`` ({"mock_itl_ms": "20"}) is the same level as the headers,
    # for clients that can set metadata but not headers; headers win on conflict.
    from_headers = {**metadata_overrides(body.get("metadata")), **header_overrides(headers)}
    messages = request.messages
    directive: dict[str, Any] = {}
    if config.directives:
        messages, directive = extract_directives(messages)
    if not config.serves(request.model):
        raise model_not_found(request.model)
    prompt = last_user_text(messages)
    conversation = summarize(messages, [tool.name for tool in request.tools])
    book = app.rules
    costly = book.match_cost(prompt) > _MATCH_INLINE_MAX_COST
    if costly:
        matched = await asyncio.to_thread(book.matching, request.model, prompt, conversation)
    else:
        matched = book.matching(request.model, prompt, conversation)
    rule = app.rules.choose(matched, commit=commit)
    near_miss = None
    if rule is None and book.rules:
        explain = functools.partial(
            book.near_miss,
            request.model,
            prompt,
            matched,
            committed=commit,
            conversation=conversation,
        )
        near_miss = await asyncio.to_thread(explain) if costly else explain()
    control = resolve(
        model=request.model,
        default_profile=config.profile,
        rule=rule.respond if rule else None,
        rule_id=rule.id if rule else None,
        headers=from_headers,
        directive=directive,
        conversation=conversation,
    )
    sequence = app.ledger.next_seq() if commit else 0
    # The same body under the same seeds and settings has the same base seed: a load test's
    # repeated prompts skip serialising their messages again.
    # The format is part of the key: the same bytes can be two conversations in two formats.
    key = (
        (raw, config.seed, control.seed, config.directives, fmt)
        if len(raw) <= _SEEDS_BODY_MAX
        else None
    )
    base = _base_seeds.get(key) if key is not None else None
    if base is None:
        base = base_seed(request, control, messages, config.seed)
        if key is not None:
            if len(_base_seeds) >= _SEEDS_MAX:
                del _base_seeds[next(iter(_base_seeds))]
            _base_seeds[key] = base
    return Prepared(body, request, control, messages, sequence, base, near_miss, fmt)


def decoded_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(header_text(k), header_text(v)) for k, v in scope["headers"]]


async def build(
    seed: int, prepared: Prepared, created: int | None
) -> tuple[Plan, Script | EventScript | Body | None]:
    """The plan (and, given ``created``, the script) of an answer.

    A generated stream's tokens are made as it plays, a slice at a time. What must exist
    before the first byte (a non-streamed body, the tokens of a given text or an echo) costs
    about a microsecond per token: past a few thousand tokens that is built in a worker
    thread instead, so the GIL's switch interval (5 ms) bounds how long other streams wait.
    """
    request, control, messages = prepared.request, prepared.control, prepared.messages

    fmt = prepared.format

    def build_now() -> tuple[Plan, Script | EventScript | Body | None]:
        plan = build_plan(
            request,
            control,
            messages=messages,
            server_seed=seed,
            sequence=prepared.sequence,
            base=prepared.base,
        )
        if created is None:
            return plan, None
        if fmt is CHAT:
            if request.stream:
                script = stream_script(plan, created=created, include_usage=request.include_usage)
                return plan, script
            return plan, body_script(plan, created=created)
        if request.stream:
            return plan, fmt.stream(plan, prepared.body, created)
        return plan, fmt.body(plan, prepared.body, created, seed)

    prompt = last_user_text(messages)
    costly = tokens_built_up_front(request, control, prompt) > _BUILD_INLINE_MAX_TOKENS
    if costly or (fmt is not CHAT and created is not None and fmt.build_in_thread(prepared.body)):
        return await asyncio.to_thread(build_now)
    return build_now()


async def handle_chat(
    app: MockApp, scope: Scope, receive: Receive, send: Send, fmt: Format = CHAT
) -> None:
    """Answer one generation request in ``fmt``; every outcome, a rejection included, lands in
    the ledger."""
    started = time.time()
    try:
        raw = await read_body(receive)
    except ConnectionResetError:
        return
    except MockError as exc:
        await send_json(send, *fmt.error(exc), [])
        return
    # Credentials are fingerprinted before anything keeps them (redact.py).
    headers = decoded_headers(scope)
    headers_json = redact_headers(headers)
    try:
        prepared = await prepare(app, scope, raw, commit=True, headers=headers, fmt=fmt)
    except MockError as exc:
        await _reject(app, send, exc, raw, headers_json, started, fmt)
        return
    request, control = prepared.request, prepared.control
    ledger = app.ledger
    chat_id = completion_id(
        request,
        control,
        messages=prepared.messages,
        server_seed=app.config.seed,
        sequence=prepared.sequence,
        base=prepared.base,
    )
    entry = Entry(
        id=chat_id if fmt is CHAT else fmt.response_id(chat_id),
        seq=prepared.sequence,
        model=request.model,
        stream=request.stream,
        headers=headers_json,
        body=prepared.body,
        started_at=started,
        rule_id=control.rule_id,
        near_miss=prepared.near_miss,
        faults=control.faults.names,
        format=fmt.name,
        worker=app.worker,
    )
    ledger.add(entry)
    response_headers = fmt.headers(entry.id)

    # The answer is written by this task itself: a task of its own per request cost more
    # (its creation and a hop through the loop before the first byte) than it saved.
    current = asyncio.current_task()
    assert current is not None
    app.track(current)
    left = False

    def on_receive(watch: asyncio.Future[Message]) -> None:
        # A disconnect is recorded the moment uvicorn reports it, then the answer is
        # cancelled so a sleeping or stalled stream stops at once.
        nonlocal left
        if watch.cancelled() or watch.exception() is not None:
            return
        if watch.result()["type"] == "http.disconnect" and entry.outcome is None:
            ledger.end(entry, "client_disconnected", disconnect=True)
            left = True
            current.cancel()

    watching: list[asyncio.Future[Message]] = []

    def watch() -> None:
        # The client can only be seen leaving while the answer waits: an answer written in
        # one go (instant) needs no watch at all, a paced one needs it after its first byte.
        if not watching:
            watcher = asyncio.ensure_future(receive())
            watcher.add_done_callback(on_receive)
            watching.append(watcher)

    try:
        await _respond(app, send, entry, prepared, int(started), response_headers, watch)
    except asyncio.CancelledError:
        if left and current.uncancel() == 0:
            return  # the client went away; that is recorded, not an error
        raise
    finally:
        if entry.outcome is None:
            ledger.end(entry, "server_error")
        ledger.compact(entry)


async def _reject(
    app: MockApp,
    send: Send,
    exc: MockError,
    raw: bytes,
    headers_json: dict[str, str],
    started: float,
    fmt: Format,
) -> None:
    """A request the mock refuses is still a ledger entry (outcome ``rejected``)."""
    ledger = app.ledger
    seq = ledger.next_seq()
    try:
        logged: Any = parse_json(raw)
    except MockError:
        # Kept as text: a body the parser refused may hold what the ledger cannot give back.
        logged = header_text(raw)
    model = logged.get("model") if isinstance(logged, dict) else None
    entry = Entry(
        id=fmt.response_id(f"chatcmpl-rejected{seq:06d}"),
        seq=seq,
        model=model if isinstance(model, str) else None,
        stream=bool(isinstance(logged, dict) and logged.get("stream") is True),
        headers=headers_json,
        body=logged,
        started_at=started,
        status=exc.status,
        error=exc.message,
        format=fmt.name,
        worker=app.worker,
    )
    ledger.add(entry)
    ledger.end(entry, "rejected")
    await send_json(send, *fmt.error(exc), fmt.headers(entry.id))


async def _respond(
    app: MockApp,
    send: Send,
    entry: Entry,
    prepared: Prepared,
    created: int,
    headers: Headers,
    watch: Callable[[], None],
) -> None:
    app.active_streams += 1
    try:
        if not prepared.request.stream:
            watch()  # a body waits for its last token's due time
        plan, script = await build(app.config.seed, prepared, created)
        assert script is not None
        fmt = prepared.format
        entry.tokens = script.tokens
        if not fmt.generates_text:
            entry.usage = script.usage  # type: ignore[union-attr]
        else:
            if plan.choices:
                entry.finish_reason = plan.choices[0].finish_reason
            entry.usage = plan.usage
        faults = prepared.control.faults
        ledger = app.ledger
        if faults.slow_headers_ms:
            watch()
            await asyncio.sleep(faults.slow_headers_ms / 1000.0)
        if faults.status is not None:
            status, payload = faults.status, fmt.status_error(faults.status)
            await status_fault(
                send, ledger, entry, status, faults.retry_after, headers, payload=payload
            )
        elif isinstance(script, Script):
            await write_stream(send, ledger, entry, script, headers, watch)
        elif isinstance(script, EventScript):
            await write_stream(send, ledger, entry, script, headers, watch, fmt.stream_headers)
        elif faults.error_after is not None:
            await wait_until(script.event[0])
            payload = fmt.status_error(500)
            await status_fault(send, ledger, entry, 500, None, headers, "error_after", payload)
        else:
            await write_body(send, ledger, entry, script, headers)
    except asyncio.CancelledError as exc:
        if not is_shutdown(exc) or entry.outcome is not None:
            raise
        # Stopped before any byte of the answer went out (a stream that started ends its
        # own body, respond.write_stream): OpenAI's 503 instead.
        uncancel_current()
        entry.status = ShuttingDown.status
        app.ledger.end(entry, "server_shutdown")
        error = ShuttingDown(
            "The server is shutting down; retry the request.", code="server_shutdown"
        )
        await send_json(send, *prepared.format.error(error), headers)
    finally:
        app.active_streams -= 1
