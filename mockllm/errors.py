"""Errors of mockllm, each knowing the HTTP status and OpenAI error body it maps to.

:func:`error_body` is the one definition of OpenAI's error shape: these errors, the fault
answers (429/500/503, the admin API's 408) and the ``data:`` error event of a stream all use it.

::

    MockError                    root; never raised itself
    ├── InvalidRequest           400 invalid_request_error (bad body, header, fault, directive)
    │   ├── InvalidJSON          a body or file that is not strict JSON (strictjson.py)
    │   └── RuleError            a rule that cannot be used: 400 when posted, a bad rules
    │                            file at start-up (CLI exit code 2)
    ├── NotFound                 404 (unknown model, unknown path, unknown rule id)
    ├── MethodNotAllowed         405
    └── ShuttingDown             503: the server is stopping (SIGTERM), try another
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "InvalidJSON",
    "InvalidRequest",
    "MethodNotAllowed",
    "MockError",
    "NotFound",
    "RuleError",
    "ShuttingDown",
    "error_body",
    "excerpt",
    "fault_body",
    "model_not_found",
]


def excerpt(value: object, limit: int = 60, *, quote: bool = True) -> str:
    """A value for an error message, cut to ``limit`` characters: messages quote what they
    refused, and what they refused may be a whole file or a 16 MiB body."""
    text = repr(value) if quote else str(value)
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def error_body(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``, in that order."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class MockError(Exception):
    status = 500
    error_type = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The error in OpenAI's shape (:func:`error_body`)."""
        return error_body(self.message, self.error_type, param=self.param, code=self.code)


class InvalidRequest(MockError):
    status = 400
    error_type = "invalid_request_error"


class InvalidJSON(InvalidRequest):
    """Not strict JSON. ``syntax``: malformed (rather than well-formed with a refused value)."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        syntax: bool = False,
    ):
        super().__init__(message, param=param, code=code)
        self.syntax = syntax


class NotFound(MockError):
    status = 404
    error_type = "invalid_request_error"


class MethodNotAllowed(MockError):
    status = 405
    error_type = "invalid_request_error"


class RuleError(InvalidRequest):
    """A rule (from a file or the admin API) that cannot be used."""


class ShuttingDown(MockError):
    """The server is stopping: new requests and open waits get this, open streams an error
    event (see ``respond.py``)."""

    status = 503
    error_type = "server_error"


def model_not_found(model: str) -> NotFound:
    """OpenAI's answer for a model it does not serve (chat and ``GET /v1/models/{id}``)."""
    return NotFound(
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


# status -> (error type, code, message) as OpenAI answers them; others get the generic message.
_FAULT_ERRORS: dict[int, tuple[str, str | None, str]] = {
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests (mockllm fault). Please try again later.",
    ),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later.",
    ),
}
_FAULT_MESSAGE = "The server had an error while processing your request. Sorry about that!"


def fault_body(status: int) -> dict[str, Any]:
    """OpenAI's error body for a ``status=N`` fault (and ``error_after`` of a body)."""
    error_type, code, message = _FAULT_ERRORS.get(
        status,
        ("server_error" if status >= 500 else "invalid_request_error", None, _FAULT_MESSAGE),
    )
    return error_body(message, error_type, code=code)
