"""A folder served over HTTP on 127.0.0.1 (the bundled clients), in a thread of this process.

The pages must come from an ``http://`` origin (a WebSocket from a ``file://`` page sends
``Origin: null``, which servers refuse); the standard library's threaded server is enough for
a few dozen pages loading two files each.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["StaticServer"]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a page's requests are not the run's news

    def end_headers(self) -> None:
        # A rebuilt bundle must never be shadowed by a cached one.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class StaticServer:
    """``with StaticServer(folder) as server:`` files of ``folder`` at ``server.url``."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="static-pages", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> StaticServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StaticServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
