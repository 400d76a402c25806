"""mockllm: a deterministic OpenAI-compatible streaming provider with a request ledger.

Start it with ``python -m mockllm --port 0`` (or ``streamharness mock``), point an OpenAI
client at the printed base URL, and inspect what it received under ``/_mock/``.
See docs/mockllm.md.

The names below are imported when first used, so that importing a pure module of the package
(``mockllm.sse``, shared by the clients that must not load asyncio or httpx) loads only that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mockllm.app import MockApp, MockConfig
    from mockllm.client import MockAdmin, MockAdminError
    from mockllm.errors import InvalidRequest, MockError, NotFound, RuleError
    from mockllm.process import MockProcess
    from mockllm.redact import fingerprint, redact_header
    from mockllm.server import MockServer

__all__ = [
    "InvalidRequest",
    "MockAdmin",
    "MockAdminError",
    "MockApp",
    "MockConfig",
    "MockError",
    "MockProcess",
    "MockServer",
    "NotFound",
    "RuleError",
    "fingerprint",
    "redact_header",
]

_HOME = {
    "InvalidRequest": "errors",
    "MockAdmin": "client",
    "MockAdminError": "client",
    "MockApp": "app",
    "MockConfig": "app",
    "MockError": "errors",
    "MockProcess": "process",
    "MockServer": "server",
    "NotFound": "errors",
    "RuleError": "errors",
    "fingerprint": "redact",
    "redact_header": "redact",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
