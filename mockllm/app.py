"""The mock's ASGI application: routing, the streaming hot path and the admin API.

It is a plain ASGI callable rather than a FastAPI app: every response here, errors included,
must have OpenAI's exact shape, and the streaming path writes pre-encoded bytes with one
``send`` per event, which Starlette's ``StreamingResponse`` would wrap in extra tasks and
iterators (see docs/mockllm.md, "Speed").
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from mockllm.control import (
    Control,
    extract_directives,
    header_overrides,
    metadata_overrides,
    resolve,
)
from mockllm.errors import InvalidRequest, MethodNotAllowed, MockError, NotFound
from mockllm.generation import (
    Action,
    Plan,
    Script,
    body_script,
    build_plan,
    completion_id,
    estimated_tokens,
    stream_script,
)
from mockllm.ledger import Entry, Ledger
from mockllm.profiles import PROFILES
from mockllm.request import ChatRequest, parse_body, parse_chat_request
from mockllm.rules import Rule, RuleBook, parse_rules
from mockllm.sse import split_event

__all__ = ["DEFAULT_MODELS", "AbortConnection", "MockApp", "MockConfig"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MODELS = ("mock-instant", "mock-fast", "mock-realistic", "gpt-4o-mini")
MAX_BODY = 16 * 1024 * 1024
_MODEL_CREATED = 1721172741
# Answers larger than this are built in a worker thread (see MockApp._build).
_BUILD_INLINE_MAX_TOKENS = 4096
# The oldest generation's threshold counts young-generation collections: this never comes.
_NO_AUTOMATIC_FULL_COLLECTION = 1_000_000_000


class AbortConnection(Exception):
    """Raised by the app to make uvicorn drop the connection mid-response (abort fault)."""


@dataclass
class MockConfig:
    """Server-wide settings: the lowest-priority source of behaviour."""

    seed: int = 0
    profile: str = "instant"
    directives: bool = False
    models: tuple[str, ...] = DEFAULT_MODELS
    # Answer every model name, not only ``models`` (a server under test that hard-codes its
    # model, "gpt-4o" or "gpt-3.5-turbo", then needs no configuration).
    any_model: bool = False
    rules: list[Rule] = field(default_factory=list)
    # How many requests the ledger keeps (the oldest are dropped first).
    ledger_size: int = 20_000
    # Own the process's garbage collector (the CLI does; an embedding test process does not):
    # see MockApp._collector.
    manage_gc: bool = False

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}")


_COMMON_HEADERS = [
    (b"x-ratelimit-limit-requests", b"10000"),
    (b"x-ratelimit-remaining-requests", b"9999"),
    (b"x-ratelimit-reset-requests", b"6ms"),
    (b"x-ratelimit-limit-tokens", b"30000000"),
    (b"x-ratelimit-remaining-tokens", b"29999000"),
    (b"x-ratelimit-reset-tokens", b"2ms"),
]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx buffers SSE unless told not to (DESIGN.md section 9).
    (b"x-accel-buffering", b"no"),
]
_JSON = (b"content-type", b"application/json")


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away before sending the body")
        body = message.get("body", b"")
        size += len(body)
        if size > MAX_BODY:
            raise InvalidRequest(f"Request body larger than {MAX_BODY} bytes.")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(
    send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    await _send_bytes(send, status, body, headers)


async def _send_bytes(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    out = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        out += headers
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_error(send: Send, error: MockError, headers: list[tuple[bytes, bytes]]) -> None:
    await _send_json(send, error.status, error.body(), headers)


class MockApp:
    """ASGI app; one instance per server. All state lives on the server's event loop."""

    def __init__(self, config: MockConfig | None = None):
        self.initial = config or MockConfig()
        # The run-time config (PATCH /_mock/config) starts as a copy of the start-up one.
        self.config = dataclasses.replace(self.initial)
        self.ledger = Ledger(max_entries=self.initial.ledger_size)
        self.rules = RuleBook()
        self.rules.add(list(self.initial.rules))
        self.active_streams = 0
        self._collector_task: asyncio.Future[None] | None = None
        self._gc_threshold = gc.get_threshold()

    def reset(self) -> None:
        """Back to the start-up state: ledger empty, initial rules with fresh counters."""
        self.config = dataclasses.replace(self.initial)
        self.ledger.clear(restart_numbering=True)
        self.rules = RuleBook()
        self.rules.add(list(self.initial.rules))

    # -- routing -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/v1/chat/completions" and method == "POST":
            await self._chat(scope, receive, send)
            return
        try:
            await self._route(path, method, scope, receive, send)
        except ConnectionResetError:
            return
        except MockError as exc:
            await _send_error(send, exc, [])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.initial.manage_gc:
                    self._gc_threshold = gc.get_threshold()
                    gc.set_threshold(*self._gc_threshold[:2], _NO_AUTOMATIC_FULL_COLLECTION)
                    self._collector_task = asyncio.ensure_future(self._collector())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._collector_task is not None:
                    self._collector_task.cancel()
                    gc.set_threshold(*self._gc_threshold)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _collector(self) -> None:
        """Full garbage collections only while no stream is running (at least once a minute).

        With a thousand open streams the oldest generation holds hundreds of thousands of
        objects and one automatic full collection stalls every stream for 20-60 ms (measured:
        docs/mockllm.md, "Speed"). The young generations keep their automatic collections.
        """
        loop = asyncio.get_running_loop()
        last = loop.time()
        seen = self.ledger.next_seq_peek()
        while True:
            await asyncio.sleep(0.25)
            now = loop.time()
            arrived = self.ledger.next_seq_peek() != seen
            if (arrived and self.active_streams == 0) or now - last > 60.0:
                gc.collect()
                last, seen = now, self.ledger.next_seq_peek()

    async def _route(
        self, path: str, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        query = {k: v[-1] for k, v in parse_qs(_decode(scope.get("query_string", b""))).items()}

        def allow(*methods: str) -> None:
            if method not in methods:
                raise MethodNotAllowed(f"Method {method} not allowed on {path}.")

        if path == "/v1/chat/completions":
            allow("POST")
        if path == "/v1/models":
            allow("GET")
            data = [self._model_object(m) for m in self.config.models]
            await _send_json(send, 200, {"object": "list", "data": data})
        elif path.startswith("/v1/models/"):
            allow("GET")
            model = path[len("/v1/models/") :]
            if model not in self.config.models and not self.config.any_model:
                raise self._model_not_found(model)
            await _send_json(send, 200, self._model_object(model))
        elif path == "/_mock/health":
            allow("GET")
            await _send_json(send, 200, {"status": "ok"})
        elif path == "/_mock/requests":
            allow("GET", "DELETE")
            if method == "DELETE":
                self.ledger.clear()
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            entries = self.ledger.query(
                model=query.get("model"),
                outcome=query.get("outcome"),
                since=self._since(query.get("since_id")),
            )
            await _send_json(send, 200, {"requests": [e.to_json() for e in entries]})
        elif path == "/_mock/requests/wait":
            allow("POST")
            await self._wait(await self._json_body(receive), send)
        elif path == "/_mock/preview":
            allow("POST")
            await self._preview(scope, await _read_body(receive), send)
        elif path == "/_mock/rules":
            allow("GET", "POST", "DELETE")
            if method == "GET":
                await _send_json(send, 200, {"rules": self.rules.to_json()})
            elif method == "POST":
                raw = await self._json_body(receive)
                created = self.rules.add(parse_rules(raw, first_index=self.rules.next_index()))
                await _send_json(send, 201, {"rules": [r.to_json() for r in created]})
            else:
                self.rules.clear()
                await send({"type": "http.response.start", "status": 204, "headers": []})
                await send({"type": "http.response.body", "body": b""})
        elif path.startswith("/_mock/rules/"):
            allow("DELETE")
            rule_id = path[len("/_mock/rules/") :]
            if not self.rules.remove(rule_id):
                raise NotFound(f"No rule with id {rule_id!r}.", param="id", code="rule_not_found")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/_mock/config":
            allow("GET", "PATCH")
            if method == "PATCH":
                self._patch_config(await self._json_body(receive))
            await _send_json(send, 200, self._config_json())
        elif path == "/_mock/reset":
            allow("POST")
            self.reset()
            await _send_json(send, 200, {"status": "reset"})
        else:
            raise NotFound(f"Invalid URL ({method} {path})", code="unknown_url")

    # -- admin helpers -------------------------------------------------------------------------

    async def _json_body(self, receive: Receive) -> Any:
        raw = await _read_body(receive)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise InvalidRequest("The request body is not valid JSON.") from None

    def _since(self, raw: str | None) -> int | None:
        if raw is None or raw == "":
            return None
        if raw.isdigit():
            return int(raw)
        seq = self.ledger.seq_of(raw)
        if seq is None:
            raise NotFound(f"No ledger entry with id {raw!r}.", param="since_id")
        return seq

    async def _wait(self, body: Any, send: Send) -> None:
        if not isinstance(body, dict):
            raise InvalidRequest("The wait body must be a JSON object.")
        count = body.get("count", 1)
        timeout = body.get("timeout", 10.0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise InvalidRequest("'count' must be an integer >= 0.", param="count")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidRequest("'timeout' must be a number of seconds >= 0.", param="timeout")
        for name in ("outcome", "model"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise InvalidRequest(f"'{name}' must be a string or null.", param=name)
        since = body.get("since_id")
        found = await self.ledger.wait(
            count,
            float(timeout),
            model=body.get("model"),
            outcome=body.get("outcome"),
            since=self._since(None if since is None else str(since)),
            ended=bool(body.get("ended", False)),
        )
        if found is None:
            error = {
                "message": f"Timed out after {timeout} s waiting for {count} matching request(s).",
                "type": "timeout",
                "param": None,
                "code": "wait_timeout",
            }
            current = self.ledger.query(model=body.get("model"), outcome=body.get("outcome"))
            await _send_json(
                send, 408, {"error": error, "requests": [e.to_json() for e in current]}
            )
            return
        await _send_json(send, 200, {"requests": [e.to_json() for e in found]})

    def _config_json(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "profile": self.config.profile,
            "directives": self.config.directives,
            "models": list(self.config.models),
            "any_model": self.config.any_model,
            "profiles": {
                name: {
                    "ttft_ms": p.timing.ttft_ms,
                    "itl_ms": p.timing.itl_ms,
                    "jitter_ms": p.timing.jitter_ms,
                    "tokens_per_chunk": p.timing.tokens_per_chunk,
                    "description": p.description,
                }
                for name, p in PROFILES.items()
            },
        }

    def _patch_config(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise InvalidRequest("The config body must be a JSON object.")
        unknown = set(body) - {"seed", "profile", "directives", "models"}
        if unknown:
            raise InvalidRequest(f"Unknown config field(s): {sorted(unknown)}.")
        if "seed" in body:
            if isinstance(body["seed"], bool) or not isinstance(body["seed"], int):
                raise InvalidRequest("'seed' must be an integer.", param="seed")
            self.config.seed = body["seed"]
        if "profile" in body:
            if body["profile"] not in PROFILES:
                raise InvalidRequest(
                    f"Unknown profile {body['profile']!r}. Known: {', '.join(PROFILES)}.",
                    param="profile",
                )
            self.config.profile = body["profile"]
        if "directives" in body:
            if not isinstance(body["directives"], bool):
                raise InvalidRequest("'directives' must be a boolean.", param="directives")
            self.config.directives = body["directives"]
        if "models" in body:
            models = body["models"]
            if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
                raise InvalidRequest("'models' must be a list of strings.", param="models")
            self.config.models = tuple(models)

    def _serves(self, model: str) -> bool:
        return self.config.any_model or model in self.config.models or model.startswith("mock")

    @staticmethod
    def _model_object(model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "mockllm"}

    @staticmethod
    def _model_not_found(model: str) -> NotFound:
        return NotFound(
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    # -- chat completions ------------------------------------------------------------------------

    def _prepare(
        self, scope: Scope, raw: bytes, *, commit: bool
    ) -> tuple[Any, ChatRequest, Control, tuple[dict[str, Any], ...], int]:
        """Everything about a chat request but building the answer; raises MockError.

        Returns the body, the request, its control, its messages (directives stripped) and its
        sequence number (0 when ``commit`` is false: nothing is counted or recorded).
        """
        body = parse_body(raw)
        request = parse_chat_request(body)
        headers = [(_decode(k), _decode(v)) for k, v in scope["headers"]]
        # The request's ``metadata`` ({"mock_itl_ms": "20"}) is the same level as the headers,
        # for clients that can set metadata but not headers; headers win on conflict.
        from_headers = {**metadata_overrides(body.get("metadata")), **header_overrides(headers)}
        messages = request.messages
        directive: dict[str, Any] = {}
        if self.config.directives:
            messages, directive = extract_directives(messages)
        if not self._serves(request.model):
            raise self._model_not_found(request.model)
        prompt = ChatRequest(request.model, messages).last_user_text
        rule = self.rules.select(request.model, prompt, commit=commit)
        control = resolve(
            model=request.model,
            default_profile=self.config.profile,
            rule=rule.respond if rule else None,
            rule_id=rule.id if rule else None,
            headers=from_headers,
            directive=directive,
        )
        sequence = self.ledger.next_seq() if commit else 0
        return body, request, control, messages, sequence

    async def _build(
        self,
        request: ChatRequest,
        control: Control,
        messages: tuple[dict[str, Any], ...],
        sequence: int,
        created: int | None,
    ) -> tuple[Plan, Script | None]:
        """The plan (and, given ``created``, the script) of an answer.

        Building costs about 1.6 us per token, all at once: a 100,000-token answer would stall
        every other stream for 0.16 s. Large answers are built in a worker thread instead, so
        the GIL's switch interval (5 ms) bounds the stall.
        """
        seed = self.config.seed

        def build() -> tuple[Plan, Script | None]:
            plan = build_plan(
                request, control, messages=messages, server_seed=seed, sequence=sequence
            )
            if created is None:
                return plan, None
            if request.stream:
                return plan, stream_script(
                    plan, created=created, include_usage=request.include_usage
                )
            return plan, body_script(plan, created=created)

        prompt = ChatRequest(request.model, messages).last_user_text
        if estimated_tokens(request, control, prompt) > _BUILD_INLINE_MAX_TOKENS:
            return await asyncio.to_thread(build)
        return build()

    async def _preview(self, scope: Scope, raw: bytes, send: Send) -> None:
        _, request, control, messages, _ = self._prepare(scope, raw, commit=False)
        plan, _ = await self._build(request, control, messages, 0, None)

        def describe(choice: Any) -> dict[str, Any]:
            call = choice.tool_call
            return {
                "index": choice.index,
                "text": "" if call else choice.text,
                "tokens": list(choice.tokens),
                "finish_reason": choice.finish_reason,
                "times": list(choice.times),
                "tool_call": (
                    {"id": call[0], "name": call[1], "arguments": call[2]} if call else None
                ),
            }

        choices = [describe(c) for c in plan.choices]
        await _send_json(
            send,
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
            },
        )

    async def _chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.time()
        try:
            raw = await _read_body(receive)
        except ConnectionResetError:
            return
        except MockError as exc:
            await _send_error(send, exc, [])
            return
        headers_json = {_decode(k): _decode(v) for k, v in scope["headers"]}
        try:
            body, request, control, messages, seq = self._prepare(scope, raw, commit=True)
        except MockError as exc:
            seq = self.ledger.next_seq()
            try:
                logged: Any = json.loads(raw)
            except ValueError:
                logged = _decode(raw)
            model = logged.get("model") if isinstance(logged, dict) else None
            entry = Entry(
                id=f"chatcmpl-rejected{seq:06d}",
                seq=seq,
                model=model if isinstance(model, str) else None,
                stream=bool(isinstance(logged, dict) and logged.get("stream") is True),
                headers=headers_json,
                body=logged,
                started_at=started,
                status=exc.status,
                error=exc.message,
            )
            self.ledger.add(entry)
            self.ledger.end(entry, "rejected")
            await _send_error(send, exc, [(b"x-request-id", entry.id.encode())])
            return
        faults = control.faults
        entry = Entry(
            id=completion_id(
                request, control, messages=messages, server_seed=self.config.seed, sequence=seq
            ),
            seq=seq,
            model=request.model,
            stream=request.stream,
            headers=headers_json,
            body=body,
            started_at=started,
            rule_id=control.rule_id,
            faults=faults.names,
        )
        self.ledger.add(entry)
        response_headers = [(b"x-request-id", entry.id.encode()), *_COMMON_HEADERS]

        ledger = self.ledger
        # The response runs in its own task: a disconnect cancels just that task, and each
        # token's wake-up resumes one shallow coroutine instead of the whole ASGI call chain.
        work = asyncio.ensure_future(
            self._respond(send, entry, request, control, messages, int(started), response_headers)
        )

        def on_receive(watch: asyncio.Future[Message]) -> None:
            # A disconnect is recorded the moment uvicorn reports it, then the response task
            # is cancelled so a sleeping or stalled stream stops at once.
            if watch.cancelled() or watch.exception() is not None:
                return
            if watch.result()["type"] == "http.disconnect" and entry.outcome is None:
                ledger.end(entry, "client_disconnected", disconnect=True)
                work.cancel()

        watcher = asyncio.ensure_future(receive())
        watcher.add_done_callback(on_receive)
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if work.cancelled() and current is not None and current.cancelling() == 0:
                return  # the client went away; that is recorded, not an error
            work.cancel()
            raise
        finally:
            if entry.outcome is None:
                ledger.end(entry, "server_error")
            ledger.compact(entry)

    async def _respond(
        self,
        send: Send,
        entry: Entry,
        request: ChatRequest,
        control: Control,
        messages: tuple[dict[str, Any], ...],
        created: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.active_streams += 1
        try:
            plan, built = await self._build(request, control, messages, entry.seq, created)
            assert built is not None
            script = built
            entry.tokens = list(script.tokens)
            if plan.choices:
                entry.finish_reason = plan.choices[0].finish_reason
            entry.usage = plan.usage
            faults = control.faults
            if faults.slow_headers_ms:
                await asyncio.sleep(faults.slow_headers_ms / 1000.0)
            if faults.status is not None:
                await self._status_fault(send, entry, faults.status, faults.retry_after, headers)
            elif request.stream:
                await self._stream(send, entry, script, headers)
            elif faults.error_after is not None:
                await self._wait_until(script.events[0][0])
                await self._status_fault(send, entry, 500, None, headers, "error_after")
            else:
                await self._body(send, entry, script, headers)
        finally:
            self.active_streams -= 1

    async def _status_fault(
        self,
        send: Send,
        entry: Entry,
        status: int,
        retry_after: float | None,
        headers: list[tuple[bytes, bytes]],
        kind: str = "status",
    ) -> None:
        error_type, code, message = {
            429: (
                "requests",
                "rate_limit_exceeded",
                "Rate limit reached for requests (mockllm fault). Please try again later.",
            ),
            503: (
                "server_error",
                None,
                "The engine is currently overloaded, please try again later.",
            ),
        }.get(
            status,
            (
                "server_error" if status >= 500 else "invalid_request_error",
                None,
                "The server had an error while processing your request. Sorry about that!",
            ),
        )
        extra = list(headers)
        if retry_after is not None:
            extra.append((b"retry-after", f"{retry_after:g}".encode()))
        entry.status = status
        self.ledger.end(entry, f"fault:{kind}")
        body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
        await _send_json(send, status, body, extra)

    @staticmethod
    async def _wait_until(due: float, start: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        delay = (loop.time() if start is None else start) + due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _body(
        self, send: Send, entry: Entry, script: Script, headers: list[tuple[bytes, bytes]]
    ) -> None:
        due, data, ntok, action = script.events[0]
        await self._wait_until(due)
        if action is Action.ABORT:
            self.ledger.end(entry, script.outcome)
            out = [_JSON, (b"content-length", str(len(data)).encode()), *headers]
            await send({"type": "http.response.start", "status": 200, "headers": out})
            half = data[: len(data) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            raise AbortConnection
        entry.first_token_at = time.time()
        entry.tokens_sent = len(entry.tokens) if ntok else 0
        self.ledger.end(entry, script.outcome)
        await _send_bytes(send, 200, data, headers)

    async def _stream(
        self, send: Send, entry: Entry, script: Script, headers: list[tuple[bytes, bytes]]
    ) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers}
        )
        loop = asyncio.get_running_loop()
        clock = loop.time
        sleep = asyncio.sleep
        # Every event is due relative to this instant, so lateness never accumulates.
        start = clock()
        # One message object for the whole stream: uvicorn reads it synchronously inside
        # send(), and not allocating a dict per token keeps the collector quiet.
        message: Message = {"type": "http.response.body", "body": b"", "more_body": True}
        for due, data, ntok, action in script.events:
            delay = start + due - clock()
            if delay > 0:
                await sleep(delay)
            if action is Action.WRITE:
                message["body"] = data
                await send(message)
            elif action is Action.SPLIT:
                head, tail = split_event(data)
                await send({"type": "http.response.body", "body": head, "more_body": True})
                await sleep(script.split_pause)
                await send({"type": "http.response.body", "body": tail, "more_body": True})
            else:
                self.ledger.end(entry, script.outcome)
                raise AbortConnection
            if ntok:
                if entry.first_token_at is None:
                    entry.first_token_at = time.time()
                entry.tokens_sent += ntok
        self.ledger.end(entry, script.outcome)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
