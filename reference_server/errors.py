"""Errors raised by reference_server, one root for the package.

Tree::

    ReferenceServerError
    ├── ProtocolError            a client sent something we cannot act on (local to one message)
    └── UpstreamError            the provider failed; ``code`` and ``retryable`` go to the client
        ├── UpstreamStatusError  a non-200 HTTP answer (``status``, ``retry_after``)
        └── UpstreamTimeout      connect or read timeout (a stalled provider)

Every error knows the protocol ``code`` it maps to, so transports never translate twice.
Third-party exceptions (httpx, pydantic, json) are translated where they are caught
(``upstream.py``, ``protocol.py``); nothing above those modules catches them.
"""

from __future__ import annotations

__all__ = [
    "ProtocolError",
    "ReferenceServerError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
]


class ReferenceServerError(Exception):
    """Root of every error this package raises on purpose."""

    code: str = "internal_error"
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProtocolError(ReferenceServerError):
    """A client message is invalid. ``msg_id`` is the offending message's ``id`` when known."""

    def __init__(self, code: str, message: str, *, msg_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.msg_id = msg_id


class UpstreamError(ReferenceServerError):
    """The provider failed. ``retryable`` tells the client whether asking again may work."""

    code = "upstream_error"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class UpstreamStatusError(UpstreamError):
    """The provider answered with a non-200 status."""

    def __init__(self, status: int, message: str, *, retry_after_s: float | None = None) -> None:
        # 408/409/429 and 5xx are worth another try; other 4xx are the request's fault.
        retryable = status in (408, 409, 429) or status >= 500
        super().__init__(f"upstream answered {status}: {message}", retryable=retryable)
        self.status = status
        self.retry_after_s = retry_after_s


class UpstreamTimeout(UpstreamError):
    """The provider did not connect or stopped sending within the configured timeout."""

    code = "upstream_timeout"
