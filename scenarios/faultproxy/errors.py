"""Errors of the fault proxy package.

::

    FaultProxyError                  root of this package (itself a scenarios HarnessError)
    ├── ApiError                     an HTTP API error (message + status), raised by the server
    │                                side and by the client for any non-2xx answer
    │   ├── NotFound                 404: unknown proxy or toxic
    │   └── AlreadyExists            409: duplicate proxy or toxic name
    ├── ServerUnavailable            client side: no answer (refused, timed out, bad response)
    └── InvalidAttributes (toxics)   toxic attributes the real server would crash on (a 400)
"""

from __future__ import annotations

from scenarios.errors import HarnessError

__all__ = ["AlreadyExists", "ApiError", "FaultProxyError", "NotFound", "ServerUnavailable"]


class FaultProxyError(HarnessError):
    """Root of every error this package raises."""


class ApiError(FaultProxyError):
    """An error answer of the Toxiproxy API: ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, object]:
        return {"error": self.message, "status": self.status}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.status})"

    @classmethod
    def from_status(cls, message: str, status: int) -> ApiError:
        if status == 404:
            return NotFound(message, status)
        if status == 409:
            return AlreadyExists(message, status)
        return cls(message, status)


class NotFound(ApiError):
    """404: the proxy or toxic does not exist."""


class AlreadyExists(ApiError):
    """409: a proxy or toxic of that name exists."""


class ServerUnavailable(FaultProxyError):
    """The API did not answer (connection refused, timeout, unreadable response)."""
