"""The live progress of ``streamharness load``: what Locust's master knows, one line for a person.

Two halves with a JSON snapshot file between them (pure: no Locust, no clock, no file I/O here):

- :class:`ProgressTally` runs in the Locust process that holds every stream (the master, or the
  only process) and turns its :class:`~loadtests.metrics.LoadMetrics` into a small snapshot
  every second; it reads only the streams added since its last call, so a long soak costs the
  same per snapshot as a short run.
- :class:`ProgressLine` runs in ``streamharness load`` and turns snapshots into a line: rewritten
  in place (``\\r``) on a terminal every second, a plain line every few seconds otherwise (CI
  logs keep every line, so fewer of them).

Why a snapshot file rather than Locust's stats history CSV: the CSV's figures are Locust's
rounded response times of every request type mixed, and a file appended while read can end in
half a line; the snapshot carries our exact TTFT, and it is replaced atomically.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from loadtests.metrics import ERROR_OUTCOMES, LoadMetrics

__all__ = ["ProgressLine", "ProgressTally", "Snapshot", "error_reasons"]


@dataclass(frozen=True)
class Snapshot:
    """What the run has done so far, ``elapsed_s`` after the test started."""

    elapsed_s: float
    users: int
    streams: int  # streams that ended (or were cut by the end of the run)
    errors: int
    tokens: int
    ttft_p50_ms: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """``ValueError`` for anything that is not a snapshot (a file from elsewhere)."""
        try:
            p50 = data["ttft_p50_ms"]
            return cls(
                elapsed_s=float(data["elapsed_s"]),
                users=int(data["users"]),
                streams=int(data["streams"]),
                errors=int(data["errors"]),
                tokens=int(data["tokens"]),
                ttft_p50_ms=None if p50 is None else float(p50),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a progress snapshot: {exc!r}") from exc


class ProgressTally:
    """Running totals over a :class:`LoadMetrics` whose ``streams`` list only grows."""

    def __init__(self) -> None:
        self._seen = 0
        self._errors = 0
        self._tokens = 0

    def snapshot(self, metrics: LoadMetrics, users: int, elapsed_s: float) -> Snapshot:
        new = metrics.streams[self._seen :]
        self._seen += len(new)
        self._errors += sum(1 for s in new if s.outcome in ERROR_OUTCOMES)
        self._tokens += sum(s.tokens for s in new)
        p50 = metrics.ttft.interpolated_percentile(50.0)
        return Snapshot(
            elapsed_s=round(elapsed_s, 2),
            users=users,
            streams=self._seen,
            errors=self._errors,
            tokens=self._tokens,
            ttft_p50_ms=None if p50 is None else round(p50 * 1000.0, 1),
        )


def error_reasons(metrics: LoadMetrics, top: int = 5) -> list[tuple[str, int]]:
    """The ``top`` most frequent reasons streams failed, with counts, most frequent first; a
    reason reads as Locust's failures table shows it (``error: connect: [Errno 111] ...``)."""
    counts = collections.Counter(
        f"{s.outcome}: {s.error_code}" if s.error_code else s.outcome
        for s in metrics.streams
        if s.outcome in ERROR_OUTCOMES
    )
    return counts.most_common(top)


def _rate(window: collections.deque[tuple[float, int]]) -> float | None:
    (t0, n0), (t1, n1) = window[0], window[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else None


class ProgressLine:
    """Prints snapshots on ``stream``: in place on a terminal every ``tty_every_s``, a plain line
    every ``plain_every_s`` otherwise. Time is the snapshot's (seconds since Locust's test
    started, not since Locust was launched: its start-up is not run time), so tests need no
    clock."""

    RATE_WINDOW_S = 5.0

    def __init__(
        self,
        stream: TextIO,
        total_s: float,
        *,
        tty: bool | None = None,
        tty_every_s: float = 1.0,
        plain_every_s: float = 5.0,
    ) -> None:
        self.stream = stream
        self.total_s = total_s
        self.tty = stream.isatty() if tty is None else tty
        self.every_s = tty_every_s if self.tty else plain_every_s
        self._next = 0.0
        self._width = 0
        # (elapsed, tokens so far); the run's start seeds it, so the first line has a rate.
        self._tokens: collections.deque[tuple[float, int]] = collections.deque([(0.0, 0)])

    def format(self, snap: Snapshot) -> str:
        elapsed_s = snap.elapsed_s
        self._tokens.append((elapsed_s, snap.tokens))
        while len(self._tokens) > 2 and self._tokens[1][0] <= elapsed_s - self.RATE_WINDOW_S:
            self._tokens.popleft()
        rate = _rate(self._tokens)
        ttft = "-" if snap.ttft_p50_ms is None else f"{snap.ttft_p50_ms:.0f} ms"
        return (
            # Locust's stop takes a moment past the run time: not "31/30 s".
            f"load: {min(elapsed_s, self.total_s):.0f}/{self.total_s:.0f} s  users {snap.users}  "
            f"streams {snap.streams}  tokens/s {'-' if rate is None else f'{rate:.0f}'}  "
            f"errors {snap.errors}  TTFT p50 {ttft}"
        )

    def update(self, snap: Snapshot) -> None:
        # Every snapshot feeds the tokens/s window; only some are printed.
        line = self.format(snap)
        if snap.elapsed_s < self._next:
            return
        self._next = snap.elapsed_s + self.every_s
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the in-place line, so what follows starts on its own line."""
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
