"""Errors of the client library.

::

    ClientError
    ├── ClientProtocolError   the server sent something the protocol does not allow
    └── ClientConnectError    could not open the connection (refused, handshake rejected)

Third-party exceptions (websockets, httpx) are translated at the I/O boundary in
:mod:`scenarios.clients.aio`, so callers catch only these.
"""

from __future__ import annotations

from scenarios.errors import HarnessError

__all__ = ["ClientConnectError", "ClientError", "ClientProtocolError"]


class ClientError(HarnessError):
    """Root of the client library's errors."""


class ClientProtocolError(ClientError, ValueError):
    """A frame, event or body that does not follow the protocol."""


class ClientConnectError(ClientError):
    """The connection could not be opened.

    ``status``: the HTTP status of a refused request or handshake; ``close_code``: the
    WebSocket close code when the server accepted, then closed before ``hello`` (1008 for a
    refused Origin or token).
    """

    def __init__(
        self, message: str, status: int | None = None, close_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.close_code = close_code
