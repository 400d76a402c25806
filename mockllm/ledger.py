"""The ledger: every request the mock received, what it wrote, and how it ended.

It lives on the server's event loop; waiters are futures woken on each arrival or ending,
never by polling. Per-token updates only bump a counter, so the hot path stays cheap.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mockllm.shared import LocalSequence, Numbering

__all__ = ["Entry", "Ledger"]


@dataclass
class Entry:
    id: str
    seq: int
    model: str | None
    stream: bool
    headers: dict[str, str]
    body: Any
    started_at: float
    status: int = 200
    tokens_sent: int = 0
    outcome: str | None = None
    disconnect_index: int | None = None
    first_token_at: float | None = None
    ended_at: float | None = None
    rule_id: str | None = None
    # When rules exist and none answered: the closest one and why it did not match.
    near_miss: str | None = None
    faults: tuple[str, ...] = ()
    error: str | None = None
    # What the answer was to end with (the first choice's) and its token accounting, as
    # planned: a relay must pass them on unchanged.
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    # The tokens of the answer in write order; ``text`` is the prefix actually written.
    # Once the request has ended they are replaced by that text (a long soak keeps thousands
    # of entries, and one string is far smaller than a list of token strings).
    tokens: Sequence[str] = ()
    written: str | None = None
    # The wire format of the request (formats/*.py ``Format.name``).
    format: str = "openai_chat"
    # Which worker served it (``--workers N``); None when the mock runs one process.
    worker: int | None = None

    @property
    def text(self) -> str:
        if self.written is not None:
            return self.written
        return "".join(self.tokens[: self.tokens_sent])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "format": self.format,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "tokens_sent": self.tokens_sent,
            "outcome": self.outcome,
            "disconnect_index": self.disconnect_index,
            "started_at": self.started_at,
            "first_token_at": self.first_token_at,
            "ended_at": self.ended_at,
            "rule_id": self.rule_id,
            "near_miss": self.near_miss,
            "faults": list(self.faults),
            "error": self.error,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "headers": self.headers,
            "body": self.body,
            "text": self.text,
        }
        if self.worker is not None:
            out["worker"] = self.worker
        return out


Predicate = Callable[[Entry], bool]


class Ledger:
    def __init__(
        self,
        max_entries: int = 20_000,
        clock: Callable[[], float] = time.time,
        sequence: Numbering | None = None,
    ):
        self._entries: deque[Entry] = deque(maxlen=max_entries)
        # Shared by every worker with ``--workers N`` (shared.py).
        self._seq: Numbering = sequence or LocalSequence()
        self._waiters: set[asyncio.Future[None]] = set()
        self._waiting = 0
        # Bumped on every arrival, ending and clear: another worker's wait watches it.
        self.version = 0
        self.clock = clock

    def next_seq_peek(self) -> int:
        """The ``seq`` the next request will get (does not consume it)."""
        return self._seq.peek()

    def next_seq(self) -> int:
        return self._seq.next()

    def add(self, entry: Entry) -> Entry:
        self._entries.append(entry)
        self._notify()
        return entry

    def end(self, entry: Entry, outcome: str, *, disconnect: bool = False) -> None:
        """Record how a request ended (the first ending wins)."""
        if entry.outcome is not None:
            return
        entry.outcome = outcome
        entry.ended_at = self.clock()
        if disconnect:
            entry.disconnect_index = entry.tokens_sent
        self._notify()

    def compact(self, entry: Entry) -> None:
        """Freeze an ended entry's text and drop its token list."""
        entry.written = entry.text
        entry.tokens = ()

    def clear(self, *, restart_numbering: bool = False) -> None:
        """Forget every entry; ``restart_numbering`` makes the next request ``seq`` 1 again."""
        self._entries.clear()
        if restart_numbering:
            self._seq.reset()
        self._notify()

    def _notify(self) -> None:
        self.version += 1
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def query(
        self,
        *,
        model: str | None = None,
        outcome: str | None = None,
        since: int | None = None,
        ended: bool = False,
    ) -> list[Entry]:
        """Entries in arrival order; ``outcome`` may end with ``*`` (``fault:*``)."""

        def keep(entry: Entry) -> bool:
            if since is not None and entry.seq <= since:
                return False
            if model is not None and entry.model != model:
                return False
            if ended and entry.outcome is None:
                return False
            if outcome is not None:
                if entry.outcome is None:
                    return False
                if outcome.endswith("*"):
                    return entry.outcome.startswith(outcome[:-1])
                return entry.outcome == outcome
            return True

        return [entry for entry in self._entries if keep(entry)]

    def seq_of(self, entry_id: str) -> int | None:
        for entry in self._entries:
            if entry.id == entry_id:
                return entry.seq
        return None

    @property
    def waiting(self) -> int:
        """How many :meth:`wait` calls are in progress (``GET /_mock/stats``)."""
        return self._waiting

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def max_entries(self) -> int | None:
        return self._entries.maxlen

    async def wait(self, count: int, seconds: float, **filters: Any) -> list[Entry] | None:
        """The matching entries once there are at least ``count``, or None on timeout.

        Cancelling it (the admin API does when the waiting client leaves) leaves nothing
        behind: its future is dropped from the waiters at once, not at the next arrival.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        self._waiting += 1
        try:
            while True:
                found = self.query(**filters)
                if len(found) >= count:
                    return found
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.add(waiter)
                try:
                    # Not wait_for: in Python 3.11 it swallows a cancellation that arrives as
                    # the waiter is woken, and a shutdown's cancel would go unnoticed.
                    done, _ = await asyncio.wait((waiter,), timeout=remaining)
                finally:
                    self._waiters.discard(waiter)
                    waiter.cancel()
                if not done:
                    return None
        finally:
            self._waiting -= 1

    async def changed(self, after: int, seconds: float) -> int:
        """The :attr:`version` once it is past ``after``, or the current one after
        ``seconds`` (the long poll of a wait that spans several workers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.version <= after:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait((waiter,), timeout=remaining)
            finally:
                self._waiters.discard(waiter)
                waiter.cancel()
        return self.version
