"""The names of protocol v1 that both ends share, in a module that imports nothing.

``protocol.py`` (the server's parser and encoder) needs pydantic, which loads sockets and more
on import; the client library (``scenarios/clients/v1.py``), the Locust users and the tests
import the subprotocol's name from here instead, so there is one definition of it and the
clients stay free of what the server needs. The contract itself is ``docs/protocol.md``.
"""

from __future__ import annotations

__all__ = ["PROTOCOL_V1"]

# The WebSocket subprotocol a v1 client asks for and the server's hello names.
PROTOCOL_V1 = "llm-stream.v1"
