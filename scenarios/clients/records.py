"""What one stream looked like from the client: every token and when it arrived.

Pure data, no I/O and no clock: the transports read ``time.perf_counter()`` themselves and
pass the values in, so the metrics below are plain arithmetic on recorded numbers and can be
tested with made-up timestamps. Every transport (WebSocket v1, tutorial-shaped WebSocket,
SSE, blocking, polling) fills the same :class:`StreamRecord`, so checks and reports compare
them without caring how the tokens travelled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Transport = Literal["ws", "tutorial", "sse", "http", "blocking", "polling", "browser"]
Outcome = Literal["completed", "cancelled", "error", "disconnected", "timeout"]
ArrivalKind = Literal["token", "tool_call"]

__all__ = ["ArrivalKind", "Outcome", "StreamRecord", "TokenArrival", "Transport"]


@dataclass(frozen=True, slots=True)
class TokenArrival:
    """One token (or tool-call fragment) as received.

    ``index`` is the server's token index (dense from 0 per stream) or, for transports that
    carry no index (tutorial), the position in arrival order. ``t`` is
    ``time.perf_counter()`` when the client read it.
    """

    index: int
    content: str
    t: float
    kind: ArrivalKind = "token"


@dataclass(slots=True)
class StreamRecord:
    """One stream as the client saw it, filled while it runs.

    Times ending in ``_at`` are ``time.perf_counter()`` values (monotonic, for durations);
    those ending in ``_at_epoch`` are ``time.time()`` values, comparable with the mock's
    ledger and the server's logs.
    """

    transport: Transport
    id: str
    stream_id: str | None = None
    sent_at: float | None = None
    sent_at_epoch: float | None = None
    arrivals: list[TokenArrival] = field(default_factory=list)
    outcome: Outcome | None = None
    ended_at: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    # token count announced by the server's end message, when the transport has one
    expected_tokens: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_retryable: bool | None = None
    http_status: int | None = None
    close_code: int | None = None
    # when the client sent its cancel; the mock's ledger says when upstream stopped
    cancelled_at: float | None = None
    cancelled_at_epoch: float | None = None
    # last index the server says it sent before the cancel took effect (-1: none)
    cancelled_index: int | None = None
    resume_token: str | None = None
    # how many `start` messages arrived, and how many of them said "replay"
    starts: int = 0
    replays: int = 0
    # how often the client continued this stream on a new connection (resend or resume)
    reconnects: int = 0
    # SSE: the last `id:` seen, what a reconnect sends as Last-Event-ID
    last_event_id: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # when the server's heartbeats (v1 ping, SSE comment, a profile's heartbeat frame) arrived
    # while this stream was open: what keeps a quiet stream alive through proxies
    heartbeats: list[float] = field(default_factory=list)
    # id() of the recorder (connection) now carrying this stream: after a reconnect the
    # old connection's end must not mark the stream "disconnected" again.
    owner: int | None = field(default=None, repr=False, compare=False)

    # --- filling -------------------------------------------------------------------------

    def add(self, index: int, content: str, t: float, kind: ArrivalKind = "token") -> None:
        self.arrivals.append(TokenArrival(index, content, t, kind))

    def finish(self, outcome: Outcome, t: float) -> None:
        """Set the outcome once; later calls are ignored (the first reason wins)."""
        if self.outcome is None:
            self.outcome = outcome
            self.ended_at = t

    def reopen(self) -> None:
        """Continue this stream on a new connection (resend or resume): how the last
        connection ended (outcome, close code, error) no longer describes the stream."""
        self.outcome = None
        self.ended_at = None
        self.close_code = None
        self.error_code = None
        self.error_message = None
        self.error_retryable = None
        self.reconnects += 1

    @property
    def done(self) -> bool:
        return self.outcome is not None

    # --- metrics -------------------------------------------------------------------------

    @property
    def tokens(self) -> list[TokenArrival]:
        """Text tokens only (tool-call fragments excluded), in arrival order."""
        return [a for a in self.arrivals if a.kind == "token"]

    @property
    def text(self) -> str:
        """Text as a naive UI would show it: every token in arrival order, duplicates kept."""
        return "".join(a.content for a in self.arrivals if a.kind == "token")

    @property
    def ttft_s(self) -> float | None:
        """Seconds from sending the request to the first token (or tool-call fragment)."""
        if self.sent_at is None or not self.arrivals:
            return None
        return self.arrivals[0].t - self.sent_at

    @property
    def gaps_s(self) -> list[float]:
        """Every inter-token gap, in arrival order (``len(arrivals) - 1`` values)."""
        a = self.arrivals
        return [a[i].t - a[i - 1].t for i in range(1, len(a))]

    @property
    def e2e_s(self) -> float | None:
        """Seconds from sending the request to the end of the stream (any outcome)."""
        if self.sent_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.sent_at

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first: (last - first) / (n - 1)."""
        a = self.arrivals
        if len(a) < 2:
            return None
        return (a[-1].t - a[0].t) / (len(a) - 1)

    @property
    def duplicate_indexes(self) -> list[int]:
        counts = Counter(a.index for a in self.arrivals)
        return sorted(i for i, n in counts.items() if n > 1)

    @property
    def missing_indexes(self) -> list[int]:
        """Indexes absent from 0..max, extended to the count the server announced."""
        seen = {a.index for a in self.arrivals}
        top = max(seen) + 1 if seen else 0
        if self.expected_tokens is not None:
            top = max(top, self.expected_tokens)
        return [i for i in range(top) if i not in seen]

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly digest for reports (arrival times relative to ``sent_at``)."""
        base = self.sent_at if self.sent_at is not None else 0.0
        return {
            "transport": self.transport,
            "id": self.id,
            "stream_id": self.stream_id,
            "outcome": self.outcome,
            "finish_reason": self.finish_reason,
            "tokens": len(self.arrivals),
            "ttft_s": self.ttft_s,
            "e2e_s": self.e2e_s,
            "tpot_s": self.tpot_s,
            "error_code": self.error_code,
            "close_code": self.close_code,
            "duplicate_indexes": self.duplicate_indexes,
            "missing_indexes": self.missing_indexes,
            "arrivals": [[a.index, round(a.t - base, 6)] for a in self.arrivals],
        }
