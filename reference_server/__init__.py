"""reference_server: the token-streaming server done right (WebSocket, SSE, blocking, polling).

Run it with ``streamharness server`` or ``python -m reference_server``; embed it with
``create_app(Settings(...))``. Protocol: ``docs/protocol.md``; usage: ``docs/reference_server.md``.

The names below are imported when first used, so that importing a pure module of the package
(the protocol's constants, shared by the clients that must not load asyncio) loads only that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reference_server.app import create_app
    from reference_server.errors import (
        ProtocolError,
        ReferenceServerError,
        UpstreamError,
        UpstreamStatusError,
        UpstreamTimeout,
    )
    from reference_server.settings import Settings
    from reference_server.streams import InMemoryStreamStore, StreamStore
    from reference_server.upstream import UpstreamClient
    from reference_server.wire import PROTOCOL_V1

__all__ = [
    "PROTOCOL_V1",
    "InMemoryStreamStore",
    "ProtocolError",
    "ReferenceServerError",
    "Settings",
    "StreamStore",
    "UpstreamClient",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "create_app",
]

_HOME = {
    "PROTOCOL_V1": "wire",
    "InMemoryStreamStore": "streams",
    "ProtocolError": "errors",
    "ReferenceServerError": "errors",
    "Settings": "settings",
    "StreamStore": "streams",
    "UpstreamClient": "upstream",
    "UpstreamError": "errors",
    "UpstreamStatusError": "errors",
    "UpstreamTimeout": "errors",
    "create_app": "app",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
