"""The checks of a scenario: pure functions from what was observed to a verdict with a reason.

The runner turns what the clients recorded (one ``StreamObservation`` per logical stream, its
reconnects merged), the mock's ledger and the server's ``/stats`` snapshots into a
``RunObservation``; every check reads only that, so each is unit-tested on synthetic data.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mockllm.percentiles import percentile
from scenarios import model

__all__ = [
    "Arrival",
    "CheckResult",
    "LedgerEntry",
    "ProbeResult",
    "RunObservation",
    "StreamObservation",
    "figures",
    "percentile",
    "run_check",
    "run_checks",
]

# Per-stream details kept in a failure's reason; the rest is counted, not listed.
MAX_DETAILS = 5


@dataclass(frozen=True)
class Arrival:
    index: int | None  # None for transports without indexes (tutorial shape, blocking)
    content: str
    t: float  # seconds since the stream's first request left the client
    # "tool_call": a fragment of a tool call's arguments (they share the index sequence)
    kind: str = "token"


# Ends a profile may count as the end of an answer although the server said nothing.
_ENDED_WITHOUT_A_WORD = {
    "idle": "a silence (the profile's idle_end_ms), no end from the server",
    "close": "the connection closing, no end message",
}


@dataclass(frozen=True)
class StreamObservation:
    """One logical stream (a chat message) as the client saw it, across reconnects."""

    key: str  # "<group>/c<client>/m<message>", unique in a run
    group: str
    client: int
    message: int
    prompt: str
    transport: str
    arrivals: tuple[Arrival, ...] = ()
    # completed | cancelled | error | disconnected | timeout
    outcome: str = "completed"
    finish_reason: str | None = None
    error_code: str | None = None
    error_retryable: bool | None = None
    close_code: int | None = None
    sent_at_epoch: float = 0.0
    # When the client cancelled or dropped the stream: upstream must stop soon after.
    cancelled_at_epoch: float | None = None
    ended_t: float | None = None  # seconds since the first request, when the outcome was known
    sent_t: float = 0.0  # seconds since the run's clients started, when the request left
    attempts: int = 1
    expected_text: str | None = None
    notes: tuple[str, ...] = ()
    # The mock's ledger entries this stream caused (attributed by the observation); None:
    # match them by the prompt.
    ledger_ids: tuple[str, ...] | None = None
    error_message: str | None = None
    # seconds since the first request when the server's heartbeats arrived while it was open
    heartbeats: tuple[float, ...] = ()
    usage: Mapping[str, Any] | None = None
    # what the server said of the stream: its end's token count, its hello's heartbeat interval
    announced_tokens: int | None = None
    announced_heartbeat_ms: float | None = None
    # (code, retryable) of errors that ended an attempt the client then continued (a
    # server_shutdown before a reconnect): the final outcome alone would hide them
    errors_seen: tuple[tuple[str, bool | None], ...] = ()
    # what a cancelled stream's acknowledgement said was the last index sent
    cancelled_index: int | None = None
    # Browser pages (``kind: browser``): the frontend ("tutorial", "v1"), each text its
    # streaming element showed (seconds since the request, text), and the message it saved.
    page: str | None = None
    shown: tuple[tuple[float, str], ...] = ()
    saved_text: str | None = None

    @property
    def text(self) -> str:
        return "".join(a.content for a in self.arrivals)

    @property
    def ttft_s(self) -> float | None:
        return self.arrivals[0].t if self.arrivals else None

    @property
    def gaps_s(self) -> list[float]:
        times = [a.t for a in self.arrivals]
        return [b - a for a, b in itertools.pairwise(times)]

    @property
    def e2e_s(self) -> float | None:
        if self.ended_t is not None:
            return self.ended_t
        return self.arrivals[-1].t if self.arrivals else None

    @property
    def indexed(self) -> bool:
        return bool(self.arrivals) and all(a.index is not None for a in self.arrivals)

    @property
    def duplicate_indexes(self) -> list[int]:
        seen: set[int] = set()
        dupes: list[int] = []
        for a in self.arrivals:
            if a.index is None:
                continue
            if a.index in seen and a.index not in dupes:
                dupes.append(a.index)
            seen.add(a.index)
        return dupes

    @property
    def missing_indexes(self) -> list[int]:
        indexes = {a.index for a in self.arrivals if a.index is not None}
        if not indexes:
            return []
        return [i for i in range(max(indexes) + 1) if i not in indexes]

    def describe(self) -> str:
        what = f"{self.outcome} after {len(self.arrivals)} tokens"
        if self.outcome == "error" and self.error_message and self.error_code:
            return f"{what}: {self.error_code}: {self.error_message}"
        if self.outcome == "completed" and self.finish_reason in _ENDED_WITHOUT_A_WORD:
            return f"{what}, ended by {_ENDED_WITHOUT_A_WORD[self.finish_reason]}"
        parts = [what]
        if self.close_code is not None:
            parts.append(f"close {self.close_code}")
        if self.error_code:
            parts.append(f"error {self.error_code}")
        return ", ".join(parts)


@dataclass(frozen=True)
class LedgerEntry:
    """One upstream request as the mock recorded it (the fields checks use)."""

    id: str
    seq: int
    status: int
    stream: bool
    tokens_sent: int
    outcome: str | None
    started_at: float
    first_token_at: float | None
    ended_at: float | None
    disconnect_index: int | None
    prompt_text: str
    text: str
    body: Mapping[str, Any] = field(default_factory=dict)
    last_user_text: str = ""
    finish_reason: str | None = None
    usage: Mapping[str, Any] | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> LedgerEntry:
        body = entry.get("body") or {}
        messages = body.get("messages") if isinstance(body, Mapping) else None
        return cls(
            id=str(entry.get("id", "")),
            seq=int(entry.get("seq", 0)),
            status=int(entry.get("status", 0)),
            stream=bool(entry.get("stream", False)),
            tokens_sent=int(entry.get("tokens_sent", 0)),
            outcome=entry.get("outcome"),
            started_at=float(entry.get("started_at", 0.0)),
            first_token_at=_opt_float(entry.get("first_token_at")),
            ended_at=_opt_float(entry.get("ended_at")),
            disconnect_index=entry.get("disconnect_index"),
            prompt_text=_messages_text(messages),
            text=str(entry.get("text", "")),
            body=body if isinstance(body, Mapping) else {},
            headers=entry.get("headers") or {},
            last_user_text=_last_user_text(messages),
            finish_reason=entry.get("finish_reason"),
            usage=entry.get("usage") if isinstance(entry.get("usage"), Mapping) else None,
        )

    def matches(self, prompt: str) -> bool:
        return prompt in self.prompt_text


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
    return _content_text(users[-1].get("content")) if users else ""


def _messages_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    parts = []
    for message in messages:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts
            parts += [str(p.get("text", "")) for p in content if isinstance(p, Mapping)]
    return "\n".join(parts)


@dataclass(frozen=True)
class ProbeResult:
    """One step of a protocol probe: what was promised, whether it came, what came instead."""

    client: str  # "<group>/c<client>"
    step: int  # 1-based
    why: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class RunObservation:
    streams: tuple[StreamObservation, ...]
    ledger: tuple[LedgerEntry, ...] = ()
    stats_baseline: Mapping[str, float] | None = None
    stats_after: Mapping[str, float] | None = None
    stats_peak: Mapping[str, float] = field(default_factory=dict)
    probes: tuple[ProbeResult, ...] = ()

    def entries_for(self, stream: StreamObservation) -> list[LedgerEntry]:
        """The upstream requests ``stream`` caused, retries and resends included."""
        if stream.ledger_ids is not None:
            ids = set(stream.ledger_ids)
            return [e for e in self.ledger if e.id in ids]
        # Each prompt is unique in a run (it names the client and the message).
        return [e for e in self.ledger if e.matches(stream.prompt)]


@dataclass(frozen=True)
class CheckResult:
    check: str  # the check's label, e.g. "ttft p95 <= 500 ms"
    passed: bool
    reason: str  # one line; for a failure, what was wrong and where
    # False: the target lacks what the check needs; it passes and says why it did not run.
    applicable: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"check": self.check, "passed": self.passed, "reason": self.reason}
        if not self.applicable:
            out["applicable"] = False
        return out


# -------------------------------------------------------------------------------- helpers


def _details(items: Sequence[str]) -> str:
    shown = "; ".join(items[:MAX_DETAILS])
    more = len(items) - MAX_DETAILS
    return shown + (f"; and {more} more" if more > 0 else "")


def _selected(check: Any, obs: RunObservation) -> list[StreamObservation]:
    groups = check.groups
    return [s for s in obs.streams if groups is None or s.group in groups]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _diff_at(actual: str, expected: str) -> str:
    i = next(
        (k for k, (a, b) in enumerate(zip(actual, expected, strict=False)) if a != b),
        min(len(actual), len(expected)),
    )
    return (
        f"differs at char {i}: got {actual[max(0, i - 10) : i + 20]!r}, "
        f"want {expected[max(0, i - 10) : i + 20]!r} (lengths {len(actual)} vs {len(expected)})"
    )


# ---------------------------------------------------------------------------------- checks


def _every_stream_ended(check: model.EveryStreamEnded, obs: RunObservation) -> CheckResult:
    label = f"every stream ended ({'/'.join(check.outcomes)})"
    streams = _selected(check, obs)
    if not streams:
        return CheckResult(label, False, "no streams were run")
    bad = [_what_happened(s, obs) for s in streams if s.outcome not in check.outcomes]
    if bad:
        return CheckResult(
            label, False, f"{len(bad)} of {len(streams)} streams ended otherwise: {_details(bad)}"
        )
    return CheckResult(label, True, f"{len(streams)} streams ended")


def _what_happened(s: StreamObservation, obs: RunObservation) -> str:
    """A stream that did not end as it should, in words: what the server did (or did not)."""
    if s.outcome != "timeout":
        faulted = [e for e in obs.entries_for(s) if (e.outcome or "").startswith("fault:")]
        if s.outcome == "completed" and faulted:
            e = faulted[-1]
            return (
                f"{s.key} {s.describe()}, as if whole, although the provider's stream ended "
                f"with {e.outcome} after {e.tokens_sent} tokens"
            )
        return f"{s.key} {s.describe()}"
    waited_until = s.sent_at_epoch + (s.ended_t or 0.0)
    got = f"{len(s.arrivals)} tokens"
    entries = obs.entries_for(s)
    if not entries:
        return (
            f"{s.key}: no request reached the provider; the client waited "
            f"{s.ended_t or 0.0:.1f} s with no token, no end and no error"
        )
    upstream = entries[-1]
    # A request that ended only when the client gave up was still open while it waited.
    if upstream.ended_at is None or upstream.ended_at >= waited_until - 0.05:
        silent = (s.ended_t or 0.0) - (s.arrivals[-1].t if s.arrivals else 0.0)
        return (
            f"{s.key}: {got}, then nothing for {silent:.1f} s (no end, no error) while the "
            "provider's request was still open"
        )
    waited = waited_until - upstream.ended_at
    if upstream.status != 200:
        what = f"the provider answered HTTP {upstream.status}"
        if len(entries) == 1:
            what += " and the server did not retry"
    elif upstream.outcome == "completed":
        what = f"the provider finished its answer ({upstream.tokens_sent} tokens)"
    else:
        what = (
            f"the provider's stream ended with {upstream.outcome} "
            f"after {upstream.tokens_sent} tokens"
        )
    since_last = (s.ended_t or 0.0) - (s.arrivals[-1].t if s.arrivals else 0.0)
    if s.arrivals and since_last < 0.5:
        # Not a server that went quiet: the client's time ran out while tokens still came.
        return (
            f"{s.key}: {what}; the client gave up {waited:.1f} s later with {got} still "
            f"arriving (the last {since_last * 1000:.0f} ms before): no end yet"
        )
    return f"{s.key}: {what}; the client then waited {waited:.1f} s with {got}: no error, no end"


def _text_matches_mock(check: model.TextMatchesMock, obs: RunObservation) -> CheckResult:
    label = "text equals the mock's answer"
    streams = _selected(check, obs)
    bad: list[str] = []
    compared = 0
    for s in streams:
        if s.expected_text is None:
            bad.append(f"{s.key}: the mock's answer is unknown (no preview)")
            continue
        compared += 1
        if s.outcome == "completed":
            if s.text != s.expected_text:
                bad.append(f"{s.key}: {_diff_at(s.text, s.expected_text)}")
        elif not s.expected_text.startswith(s.text):
            # A stream cut short may stop early, but what arrived must be the answer's start.
            diff = _diff_at(s.text, s.expected_text)
            bad.append(f"{s.key} ({s.outcome}) is not a prefix of it: {diff}")
    if not streams:
        return CheckResult(label, False, "no streams were run")
    if bad:
        return CheckResult(
            label, False, f"{len(bad)} of {len(streams)} streams differ: {_details(bad)}"
        )
    return CheckResult(label, True, f"{compared} streams match")


def _indexes_dense(check: model.IndexesDense, obs: RunObservation) -> CheckResult:
    label = "no duplicate or missing token indexes"
    streams = _selected(check, obs)
    if not any(s.arrivals for s in streams):
        return CheckResult(label, False, "no stream received a token")
    bad = []
    for s in streams:
        if s.duplicate_indexes:
            bad.append(f"{s.key}: duplicate {s.duplicate_indexes[:10]}")
        if s.missing_indexes:
            bad.append(f"{s.key}: missing {s.missing_indexes[:10]}")
        if s.arrivals and s.arrivals[0].index != 0 and 0 not in s.missing_indexes:
            bad.append(f"{s.key}: first index {s.arrivals[0].index}")
        count = len({a.index for a in s.arrivals})
        if s.outcome == "completed" and s.announced_tokens not in (None, count):
            bad.append(f"{s.key}: the end says {s.announced_tokens} tokens, {count} arrived")
        last = max((a.index for a in s.arrivals if a.index is not None), default=-1)
        if s.outcome == "cancelled" and s.cancelled_index not in (None, last):
            bad.append(
                f"{s.key}: cancelled says index {s.cancelled_index} was sent last, "
                f"the last that arrived was {last}"
            )
    if bad:
        return CheckResult(label, False, _details(bad))
    return CheckResult(label, True, f"{len(streams)} streams dense from 0")


def _upstream_stopped(check: model.UpstreamStoppedAfterCancel, obs: RunObservation) -> CheckResult:
    label = f"upstream stopped within {check.within_ms:g} ms of the cancel"
    streams = [s for s in _selected(check, obs) if s.cancelled_at_epoch is not None]
    if not streams:
        return CheckResult(label, False, "no stream was cancelled or dropped (no action ran)")
    bad: list[str] = []
    worst = 0.0
    for s in streams:
        cancel = s.cancelled_at_epoch
        assert cancel is not None
        entries = [e for e in obs.entries_for(s) if e.started_at <= cancel]
        if not entries:
            bad.append(f"{s.key}: no upstream request started before the cancel")
            continue
        for e in entries:
            if e.ended_at is None:
                bad.append(
                    f"{s.key}: upstream request {e.id} was still running when the run ended "
                    f"({e.tokens_sent} tokens sent by then)"
                )
                continue
            late = (e.ended_at - cancel) * 1000
            worst = max(worst, late)
            if late > check.within_ms:
                bad.append(
                    f"{s.key}: upstream request {e.id} ended {late:.0f} ms after the cancel "
                    f"({e.outcome}, {e.tokens_sent} tokens sent)"
                )
    if bad:
        return CheckResult(label, False, _details(bad))
    return CheckResult(label, True, f"{len(streams)} cancels, worst {worst:.0f} ms")


def _upstream_requests(check: model.UpstreamRequests, obs: RunObservation) -> CheckResult:
    bound = f"{check.min}" if check.max == check.min else f"{check.min}..{check.max or 'any'}"
    status = f" with status {check.status}" if check.status is not None else ""
    label = f"upstream requests{status} per stream: {bound}"
    streams = _selected(check, obs)
    if not streams:
        return CheckResult(label, False, "no streams were run")
    bad = []
    for s in streams:
        entries = [
            e for e in obs.entries_for(s) if check.status is None or e.status == check.status
        ]
        n = len(entries)
        if n < check.min or (check.max is not None and n > check.max):
            bad.append(f"{s.key}: {_requests_in_words(n, check, obs.entries_for(s))}")
    if bad:
        return CheckResult(label, False, _details(bad))
    return CheckResult(label, True, f"{len(streams)} streams within bounds")


def _requests_in_words(
    n: int, check: model.UpstreamRequests, entries: Sequence[LedgerEntry]
) -> str:
    words = f"{n} upstream request{'s' if n != 1 else ''}"
    if check.max is not None and n > check.max and all(e.status == 200 for e in entries):
        return f"{words}: a second generation for one message" if n == 2 else f"{words}"
    failed = [e for e in entries if e.status != 200]
    if n < check.min and failed:
        return f"{words}: no retry after HTTP {failed[-1].status}"
    return words


def _band(
    check: model.TtftBand | model.ItlBand | model.E2eBand,
    obs: RunObservation,
    name: str,
    values_of: Callable[[StreamObservation], Iterable[float]],
) -> CheckResult:
    bounds = []
    if check.min_ms is not None:
        bounds.append(f">= {check.min_ms:g} ms")
    if check.max_ms is not None:
        bounds.append(f"<= {check.max_ms:g} ms")
    label = f"{name} {check.stat} {' and '.join(bounds)}"
    per_stream = [(s, [v * 1000 for v in values_of(s)]) for s in _selected(check, obs)]
    pooled = [v for _, vs in per_stream for v in vs]
    if not pooled:
        return CheckResult(label, False, f"no {name} values were measured")

    def out_of_band(value: float) -> bool:
        return (check.min_ms is not None and value < check.min_ms) or (
            check.max_ms is not None and value > check.max_ms
        )

    if check.stat == "each":
        bad = [f"{s.key}: {v:.0f} ms" for s, vs in per_stream for v in vs if out_of_band(v)]
        if bad:
            return CheckResult(label, False, f"{len(bad)} of {len(pooled)} out: {_details(bad)}")
        return CheckResult(
            label, True, f"{len(pooled)} values in {min(pooled):.0f}..{max(pooled):.0f} ms"
        )
    value = _stat(check.stat, pooled)
    passed = not out_of_band(value)
    return CheckResult(label, passed, f"{check.stat} = {value:.1f} ms over {len(pooled)} values")


def _stat(stat: str, values: Sequence[float]) -> float:
    if stat == "max":
        return max(values)
    if stat == "min":
        return min(values)
    if stat == "mean":
        return sum(values) / len(values)
    return percentile(values, float(stat[1:]))


def _ttft(check: model.TtftBand, obs: RunObservation) -> CheckResult:
    return _band(check, obs, "TTFT", lambda s: [] if s.ttft_s is None else [s.ttft_s])


def _itl(check: model.ItlBand, obs: RunObservation) -> CheckResult:
    return _band(check, obs, "ITL", lambda s: s.gaps_s)


def _e2e(check: model.E2eBand, obs: RunObservation) -> CheckResult:
    return _band(check, obs, "E2E", lambda s: [] if s.e2e_s is None else [s.e2e_s])


def _close_code(check: model.CloseCodeSeen, obs: RunObservation) -> CheckResult:
    label = f"close code {' or '.join(map(str, check.codes))} seen ({check.streams} streams)"
    streams = _selected(check, obs)
    hits = [s for s in streams if s.close_code in check.codes]
    passed = bool(hits) if check.streams == "any" else bool(streams) and len(hits) == len(streams)
    seen = sorted({s.close_code for s in streams if s.close_code is not None})
    return CheckResult(
        label, passed, f"{len(hits)} of {len(streams)} streams closed so; codes seen {seen}"
    )


def _error_code(check: model.ErrorCodeSeen, obs: RunObservation) -> CheckResult:
    retry = "" if check.retryable is None else f", retryable={str(check.retryable).lower()}"
    label = f"error {check.code}{retry} seen ({check.streams} streams)"
    streams = _selected(check, obs)

    def saw(s: StreamObservation) -> bool:
        errors = [(s.error_code, s.error_retryable), *s.errors_seen]
        return any(
            code == check.code and (check.retryable is None or retryable == check.retryable)
            for code, retryable in errors
        )

    hits = [s for s in streams if saw(s)]
    passed = bool(hits) if check.streams == "any" else bool(streams) and len(hits) == len(streams)
    seen = sorted(
        {f"{s.error_code}" for s in streams if s.error_code}
        | {code for s in streams for code, _ in s.errors_seen}
    )
    others = [f"{s.key} {s.describe()}" for s in streams if s not in hits]
    reason = f"{len(hits)} of {len(streams)} streams got it; codes seen {seen}"
    if not passed and others:
        reason += f"; {_details(others)}"
    return CheckResult(label, passed, reason)


def _no_leaks(check: model.NoLeaks, obs: RunObservation) -> CheckResult:
    label = f"no leaked server resources ({', '.join(check.keys)})"
    if obs.stats_baseline is None or obs.stats_after is None:
        return CheckResult(label, False, "the server's /stats was not available")
    bad = []
    for key in check.keys:
        if key not in obs.stats_after:
            bad.append(f"{key} missing from /stats")
            continue
        before = obs.stats_baseline.get(key, 0)
        after = obs.stats_after[key]
        if after > before + check.slack:
            bad.append(f"{key} {before:g} -> {after:g}")
    if bad:
        return CheckResult(label, False, _details(bad))
    return CheckResult(label, True, "back to the idle baseline")


def _heartbeat(check: model.HeartbeatSeen, obs: RunObservation) -> CheckResult:
    limit = f"{check.max_gap_ms:g} ms" if check.max_gap_ms is not None else ""
    if check.announced:
        limit += (" and " if limit else "") + "1.5 x the announced heartbeat interval"
    label = f"no silence over {limit} (a token or a heartbeat)"
    streams = _selected(check, obs)
    if not streams:
        return CheckResult(label, False, "no streams were run")
    bad, worst = [], 0.0
    for s in streams:
        allowed = check.max_gap_ms if check.max_gap_ms is not None else float("inf")
        if check.announced:
            if s.announced_heartbeat_ms is None:
                bad.append(f"{s.key}: the server announced no heartbeat interval")
                continue
            # 1.5 intervals: one may be late by its scheduling, never by a whole interval
            allowed = min(allowed, s.announced_heartbeat_ms * 1.5 + 100)
        end = s.ended_t if s.ended_t is not None else (s.arrivals[-1].t if s.arrivals else 0.0)
        times = sorted([0.0, end, *(a.t for a in s.arrivals), *s.heartbeats])
        gap, at = max(((b - a, a) for a, b in itertools.pairwise(times)), default=(0.0, 0.0))
        worst = max(worst, gap)
        if gap * 1000 > allowed:
            announced = (
                f", announced interval {s.announced_heartbeat_ms:g} ms"
                if check.announced and s.announced_heartbeat_ms is not None
                else ""
            )
            bad.append(
                f"{s.key}: {_ms(gap)} with neither a token nor a heartbeat (from {_ms(at)}); "
                f"{len(s.heartbeats)} heartbeats while it was open{announced}"
            )
    if bad:
        return CheckResult(label, False, _details(bad))
    beats = sum(len(s.heartbeats) for s in streams)
    return CheckResult(label, True, f"longest silence {_ms(worst)}, {beats} heartbeats")


def _answered(s: StreamObservation, obs: RunObservation) -> LedgerEntry | None:
    """The upstream request whose answer this stream relayed (the completed one)."""
    return next(
        (e for e in obs.entries_for(s) if e.outcome == "completed" and e.status == 200), None
    )


def _finish_reason(check: model.FinishReasonRelayed, obs: RunObservation) -> CheckResult:
    label = "finish_reason as the provider gave it"
    if check.equals is not None:
        label += f", {check.equals!r}"
    bad, compared = [], 0
    for s in _selected(check, obs):
        upstream = _answered(s, obs)
        if s.outcome != "completed" or upstream is None or upstream.finish_reason is None:
            continue
        compared += 1
        if check.equals is not None and s.finish_reason != check.equals:
            bad.append(
                f"{s.key}: the client got finish_reason {s.finish_reason!r} "
                f"(the provider's: {upstream.finish_reason!r}), expected {check.equals!r}"
            )
        elif s.finish_reason != upstream.finish_reason:
            bad.append(
                f"{s.key}: the client got finish_reason {s.finish_reason!r}, the provider said "
                f"{upstream.finish_reason!r}"
            )
    if bad:
        return CheckResult(label, False, _details(bad))
    if not compared:
        return CheckResult(label, False, "no completed stream to compare")
    return CheckResult(label, True, f"{compared} streams")


_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")
# Other names of the same counts (the AI SDK's camelCase, the Responses API's input/output).
_USAGE_ALIASES = {
    "promptTokens": "prompt_tokens",
    "inputTokens": "prompt_tokens",
    "input_tokens": "prompt_tokens",
    "completionTokens": "completion_tokens",
    "outputTokens": "completion_tokens",
    "output_tokens": "completion_tokens",
    "totalTokens": "total_tokens",
}


def _usage_keys(usage: Mapping[str, Any]) -> dict[str, Any]:
    return {_USAGE_ALIASES.get(k, k): v for k, v in usage.items()}


def _usage(check: model.UsageRelayed, obs: RunObservation) -> CheckResult:
    label = "usage as the provider counted it"
    bad, compared = [], 0
    for s in _selected(check, obs):
        upstream = _answered(s, obs)
        if s.outcome != "completed" or upstream is None or upstream.usage is None:
            continue
        compared += 1
        got = _usage_keys(s.usage or {})
        # The counts the client was given must be the provider's (a protocol may leave the
        # total out); a client given none of them got no usage.
        given = [k for k in _USAGE_KEYS if k in upstream.usage and k in got]
        wrong = [k for k in given if got[k] != upstream.usage[k]]
        if not given:
            bad.append(f"{s.key}: the client got no token usage")
        elif wrong:
            shown = ", ".join(f"{k} {got[k]!r} (provider {upstream.usage[k]!r})" for k in wrong)
            bad.append(f"{s.key}: the client got {shown}")
    if bad:
        return CheckResult(label, False, _details(bad))
    if not compared:
        return CheckResult(label, False, "no completed stream to compare")
    return CheckResult(label, True, f"{compared} streams")


def _probe(check: model.ProbeAnswered, obs: RunObservation) -> CheckResult:
    label = "every probe step got what the protocol promises"
    groups = check.groups
    steps = [p for p in obs.probes if groups is None or p.client.split("/")[0] in groups]
    if not steps:
        return CheckResult(label, False, "no probe step ran")
    bad = [f"{p.client} step {p.step} ({p.why}): {p.detail}" for p in steps if not p.ok]
    if bad:
        return CheckResult(label, False, f"{len(bad)} of {len(steps)} steps: {_details(bad)}")
    return CheckResult(label, True, f"{len(steps)} steps")


def _browser_streams(check: Any, obs: RunObservation) -> list[StreamObservation]:
    return [s for s in _selected(check, obs) if s.page is not None]


def _saved_matches_mock(check: model.SavedMatchesMock, obs: RunObservation) -> CheckResult:
    label = "saved message equals the mock's answer"
    streams = _browser_streams(check, obs)
    if not streams:
        return CheckResult(label, False, "no browser page was run")
    bad: list[str] = []
    for s in streams:
        if s.expected_text is None:
            bad.append(f"{s.key}: the mock's answer is unknown (no preview)")
        elif s.saved_text is None:
            bad.append(f"{s.key}: the page saved no answer ({s.describe()})")
        elif s.saved_text != s.expected_text:
            missing = ""
            if s.expected_text.startswith(s.saved_text):
                tail = s.expected_text[len(s.saved_text) :]
                missing = f", the tail {tail[:40]!r} missing"
            bad.append(f"{s.key}: {_diff_at(s.saved_text, s.expected_text)}{missing}")
    if bad:
        return CheckResult(
            label, False, f"{len(bad)} of {len(streams)} pages differ: {_details(bad)}"
        )
    return CheckResult(label, True, f"{len(streams)} saved messages match")


def _shown_matches_received(check: model.ShownMatchesReceived, obs: RunObservation) -> CheckResult:
    label = "what the page showed equals what its WebSocket received"
    streams = _browser_streams(check, obs)
    if not streams:
        return CheckResult(label, False, "no browser page was run")
    bad: list[str] = []
    for s in streams:
        received = s.text
        wrong = next(((t, text) for t, text in s.shown if not received.startswith(text)), None)
        if wrong is not None:
            t, text = wrong
            bad.append(
                f"{s.key}: at {_ms(t)} it showed text its WebSocket did not receive for "
                f"this message: {_diff_at(text, received)}"
            )
            continue
        final = (
            s.saved_text
            if s.saved_text is not None
            else next((text for _, text in reversed(s.shown) if text), "")
        )
        if final != received:
            what = "saved" if s.saved_text is not None else "last showed"
            bad.append(f"{s.key}: it {what} {_diff_at(final, received)}")
    if bad:
        return CheckResult(
            label, False, f"{len(bad)} of {len(streams)} pages differ: {_details(bad)}"
        )
    return CheckResult(label, True, f"{len(streams)} pages showed what they received")


def _stats_bounded(check: model.StatsBounded, obs: RunObservation) -> CheckResult:
    reach = f"reaches {check.min:g} and " if check.min is not None else ""
    label = f"/stats {check.key} {reach}stays <= {check.max:g}"
    if check.key not in obs.stats_peak:
        return CheckResult(label, False, f"{check.key} was never sampled from /stats")
    peak = obs.stats_peak[check.key]
    if peak > check.max:
        return CheckResult(label, False, f"peak {peak:g}: over the bound")
    if check.min is not None and peak < check.min:
        return CheckResult(
            label, False, f"peak {peak:g}: the load never reached the bound, so it was not tested"
        )
    return CheckResult(label, True, f"peak {peak:g}")


_CHECKS: dict[type[Any], Callable[[Any, RunObservation], CheckResult]] = {
    model.EveryStreamEnded: _every_stream_ended,
    model.TextMatchesMock: _text_matches_mock,
    model.IndexesDense: _indexes_dense,
    model.UpstreamStoppedAfterCancel: _upstream_stopped,
    model.UpstreamRequests: _upstream_requests,
    model.TtftBand: _ttft,
    model.ItlBand: _itl,
    model.E2eBand: _e2e,
    model.CloseCodeSeen: _close_code,
    model.ErrorCodeSeen: _error_code,
    model.NoLeaks: _no_leaks,
    model.StatsBounded: _stats_bounded,
    model.HeartbeatSeen: _heartbeat,
    model.FinishReasonRelayed: _finish_reason,
    model.UsageRelayed: _usage,
    model.ProbeAnswered: _probe,
    model.SavedMatchesMock: _saved_matches_mock,
    model.ShownMatchesReceived: _shown_matches_received,
}


def run_check(check: model.Check, obs: RunObservation) -> CheckResult:
    result = _CHECKS[type(check)](check, obs)
    if check.groups is not None:
        result = dataclasses.replace(result, check=f"{result.check} [{', '.join(check.groups)}]")
    return result


def run_checks(
    checks: Sequence[model.Check],
    obs: RunObservation,
    unmet: Callable[[frozenset[str]], str | None] | None = None,
) -> list[CheckResult]:
    """Run every check; ``unmet(needs)`` says why the target cannot be judged by a check
    (its result then passes, marked not applicable, with that reason)."""
    out = []
    for check in checks:
        result = run_check(check, obs)
        why = unmet(check.all_needs) if unmet is not None else None
        if why is not None:
            result = CheckResult(result.check, True, f"not applicable: {why}", applicable=False)
        out.append(result)
    return out


def figures(obs: RunObservation) -> dict[str, Any]:
    """Key figures of a run for the final table and the reports."""
    streams = obs.streams
    ttfts = [s.ttft_s * 1000 for s in streams if s.ttft_s is not None]
    gaps = [g * 1000 for s in streams for g in s.gaps_s]
    out: dict[str, Any] = {
        "streams": len(streams),
        "completed": sum(1 for s in streams if s.outcome == "completed"),
        "tokens": sum(len(s.arrivals) for s in streams),
        "upstream_requests": len(obs.ledger),
    }
    if ttfts:
        out["ttft_p50_ms"] = round(percentile(ttfts, 50), 1)
        out["ttft_max_ms"] = round(max(ttfts), 1)
    if gaps:
        out["itl_p50_ms"] = round(percentile(gaps, 50), 1)
        out["itl_p99_ms"] = round(percentile(gaps, 99), 1)
    return out
