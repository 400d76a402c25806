"""Admission checks as pure functions: message rate, Origin allow-list, bearer token.

The clock is passed in (``now``), so tests drive the rate limiter without sleeping.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

__all__ = ["TokenBucket", "check_auth", "check_origin"]


class TokenBucket:
    """``rate`` messages per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def check_origin(origin: str | None, allowed: Sequence[str], allow_missing: bool) -> str | None:
    """None when accepted, else the reason to refuse. An empty allow-list accepts any Origin."""
    if origin is None:
        return None if allow_missing or not allowed else "an Origin header is required"
    if not allowed or "*" in allowed or origin in allowed:
        return None
    return f"origin {origin!r} is not allowed"


def check_auth(
    expected: str | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> str | None:
    """None when accepted. The token comes from ``Authorization: Bearer`` or ``?access_token=``
    (browsers cannot set headers on a WebSocket or an EventSource)."""
    if expected is None:
        return None
    presented = query.get("access_token")
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        presented = authorization[7:].strip()
    if presented is None:
        return "missing bearer token"
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return "invalid bearer token"
    return None
