"""Errors of loadtests, under one root so a caller can catch everything the package raises.

::

    LoadTestError                root; never raised itself
    ├── LoadError                a load run produced no results (Locust failed or overran)
    ├── MetricsError             bad input to the metrics layer         (also a ValueError)
    ├── FrameError               bytes that are not WebSocket framing   (also a ValueError)
    ├── HttpStreamError          a broken connection or invalid HTTP/1.1 (also an OSError)
    ├── ConnectionClosed         the server closed a Locust user's WebSocket
    └── StreamError              a stream that did not complete, as Locust's failures show it

The second bases stay so that code catching ``ValueError`` or ``OSError`` (as the Locust users
do for every network failure) keeps catching these. Each is re-exported by the module that
raises it (``loadtests.metrics.MetricsError`` and so on), where callers found them before.
Pure: no Locust, no gevent.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "FrameError",
    "HttpStreamError",
    "LoadError",
    "LoadTestError",
    "MetricsError",
    "StreamError",
]


class LoadTestError(Exception):
    """Root of every exception loadtests defines."""


class LoadError(LoadTestError):
    """The load run could not produce results (Locust failed, no metrics written)."""


class MetricsError(LoadTestError, ValueError):
    """Bad input to the metrics layer (unknown outcome, malformed serialised data)."""


class FrameError(LoadTestError, ValueError):
    """The byte stream is not valid WebSocket framing."""


class HttpStreamError(LoadTestError, OSError):
    """The connection broke or the peer spoke invalid HTTP/1.1."""


class ConnectionClosed(LoadTestError):
    """The server closed the WebSocket (close frame or EOF); ``code`` when it sent one."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"connection closed ({code})")
        self.code = code


class StreamError(LoadTestError):
    """What Locust shows in its failures table for a stream that did not complete."""
