"""Errors of mockllm, each knowing the HTTP status and OpenAI error body it maps to.

::

    MockError                    root; never raised itself
    ├── InvalidRequest           400 invalid_request_error (bad body, header, fault, directive)
    ├── NotFound                 404 (unknown model, unknown path, unknown rule id)
    ├── MethodNotAllowed         405
    └── RuleError                400 when posted; a bad rule file at start-up (CLI exit code 2)
"""

from __future__ import annotations

from typing import Any

__all__ = ["InvalidRequest", "MethodNotAllowed", "MockError", "NotFound", "RuleError"]


class MockError(Exception):
    status = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(MockError):
    status = 400
    error_type = "invalid_request_error"


class NotFound(MockError):
    status = 404
    error_type = "invalid_request_error"


class MethodNotAllowed(MockError):
    status = 405
    error_type = "invalid_request_error"


class RuleError(InvalidRequest):
    """A rule (from a file or the admin API) that cannot be used."""
