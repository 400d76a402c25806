"""reference_server: the token-streaming server done right (WebSocket, SSE, blocking, polling).

Run it with ``streamharness server`` or ``python -m reference_server``; embed it with
``create_app(Settings(...))``. Protocol: ``docs/protocol.md``; usage: ``docs/reference_server.md``.
"""

from reference_server.app import create_app
from reference_server.errors import (
    ProtocolError,
    ReferenceServerError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from reference_server.protocol import PROTOCOL_V1
from reference_server.settings import Settings
from reference_server.streams import InMemoryStreamStore, StreamStore
from reference_server.upstream import UpstreamClient

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
