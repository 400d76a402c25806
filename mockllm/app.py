"""The mock's ASGI application: its state, the lifespan and the split between chat and admin.

On a token's way this is the door: uvicorn calls :class:`MockApp` with every request, a
generation request in any format (``routes.py``: a chat completion, an Anthropic message, ...)
goes straight to the chat handler (``chat.py``: request in, script built), which
hands the script to ``respond.py`` (SSE out); everything else goes through the admin route
table (``admin.py``). The app holds what those share: the run-time config, the ledger of
requests, the rule book and the count of answers in flight.

It is a plain ASGI callable rather than a FastAPI app: every response here, errors included,
must have OpenAI's exact shape, and the streaming path writes pre-encoded bytes, one ``send``
for the events due together, which Starlette's ``StreamingResponse`` would wrap in extra
tasks and iterators (see docs/mockllm.md, "Speed").
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING

from mockllm import admin
from mockllm.asgi import Receive, Scope, Send, send_json
from mockllm.chat import handle_chat
from mockllm.collector import managed_collections
from mockllm.config import DEFAULT_MODELS, MockConfig
from mockllm.errors import MockError, ShuttingDown
from mockllm.ledger import Ledger
from mockllm.respond import SHUTDOWN, AbortConnection
from mockllm.routes import format_of_path, route
from mockllm.rules import RuleBook

if TYPE_CHECKING:
    from mockllm.cluster import Cluster

__all__ = ["DEFAULT_MODELS", "AbortConnection", "MockApp", "MockConfig"]

# With ``manage_gc``, a full collection runs at least this often under sustained load.
_FULL_COLLECTION_INTERVAL_S = 60.0

logger = logging.getLogger("mockllm")


class MockApp:
    """ASGI app; one instance per server. All state lives on the server's event loop."""

    def __init__(self, config: MockConfig | None = None, cluster: Cluster | None = None):
        self.initial = config or MockConfig()
        # One of several workers (``--workers N``): numbering and rule counters are shared,
        # and the admin API answers for every worker (cluster.py).
        self.cluster = cluster
        self.worker = cluster.index if cluster is not None else None
        # The run-time config (PATCH /_mock/config) starts as a copy of the start-up one.
        self.config = dataclasses.replace(self.initial)
        self.ledger = Ledger(
            max_entries=self.initial.ledger_size,
            sequence=cluster.counters.sequence() if cluster is not None else None,
        )
        self.rules = self._initial_rules()
        # answers being built or written (the collector waits for none)
        self.active_streams = 0
        # Tasks that a shutdown must end (chat answers, ledger waits): see drain().
        self.in_flight: set[asyncio.Task[object]] = set()
        self.stopping = False

    def track(self, task: asyncio.Task[object]) -> None:
        """Let :meth:`drain` end ``task`` (it is forgotten once done)."""
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def drain(self, timeout_s: float) -> int:
        """Stop: refuse new requests (503) and end every answer and wait in flight, a stream
        with its format's error event and a clean end of its body (``respond.py``). Returns
        how many were in flight; waits at most ``timeout_s`` for them to finish writing."""
        self.stopping = True
        tasks = list(self.in_flight)
        for task in tasks:
            task.cancel(SHUTDOWN)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout_s)
        else:
            late = set()
        logger.info(
            "shutting down: ended %d request(s) in flight%s",
            len(tasks),
            f", {len(late)} still writing after {timeout_s:g} s" if late else "",
        )
        return len(tasks)

    def reset(self) -> None:
        """Back to the start-up state: ledger empty, initial rules with fresh counters."""
        self.config = dataclasses.replace(self.initial)
        self.ledger.clear(restart_numbering=True)
        self.rules = self._initial_rules()

    def _initial_rules(self) -> RuleBook:
        book = RuleBook() if self.cluster is None else RuleBook.shared(self.cluster.counters)
        book.add(list(self.initial.rules))
        return book

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        if self.stopping:
            stopping = ShuttingDown(
                "mockllm is shutting down; retry elsewhere.", code="server_shutdown"
            )
            await send_json(send, *format_of_path(scope["path"]).error(stopping), [])
            return
        fmt = route(scope["method"], scope["path"])
        if fmt is not None:
            await handle_chat(self, scope, receive, send, fmt)
            return
        try:
            await admin.dispatch(self, scope, receive, send)
        except ConnectionResetError:
            return
        except MockError as exc:
            # A wrong method on a format's path is answered in that format's error shape.
            await send_json(send, *format_of_path(scope["path"]).error(exc), [])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with contextlib.AsyncExitStack() as running:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.initial.manage_gc:
                        await running.enter_async_context(
                            managed_collections(
                                _FULL_COLLECTION_INTERVAL_S,
                                active=lambda: self.active_streams,
                                traffic=self.ledger.next_seq_peek,
                            )
                        )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await running.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
