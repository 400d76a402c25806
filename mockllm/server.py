"""Running the mock: uvicorn on a socket we bind ourselves (so port 0 works and the real
port is known before anyone connects), in the foreground (CLI) or in a thread (tests)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType
from typing import Final

import uvicorn

from mockllm.app import AbortConnection, MockApp, MockConfig
from mockllm.listen import bind_socket
from mockllm.process import MockAddress
from mockllm.uvserver import PromptServer

__all__ = ["DRAIN_TIMEOUT_S", "MockServer", "make_uvicorn_server"]

#: How long a shutdown waits for the streams it ended to write their last event.
DRAIN_TIMEOUT_S: Final = 2.0


class _HideAborts(logging.Filter):
    """uvicorn logs every exception that escapes the app; an abort fault is deliberate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], AbortConnection))


_FILTER = _HideAborts()


class _DrainingServer(PromptServer):
    """:class:`PromptServer`, but open streams end with an error event before it closes the
    connections.

    uvicorn's own graceful shutdown waits for responses to finish, then cancels them: a
    stalled or slow stream was cut mid-body (no final event, no end of the chunked body)
    and each logged a ``CancelledError`` traceback. :meth:`MockApp.drain` ends them first.
    """

    def __init__(self, config: uvicorn.Config, app: MockApp):
        super().__init__(config)
        self.mock_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.mock_app.drain(DRAIN_TIMEOUT_S)
        await super().shutdown(sockets)


def make_uvicorn_server(app: MockApp, *, loop: str = "auto") -> PromptServer:
    logging.getLogger("uvicorn.error").addFilter(_FILTER)
    config = uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan="on",
        access_log=False,
        # We only ever sit on loopback; the middleware would wrap every await of every stream.
        proxy_headers=False,
        log_level="warning",
        # Our own clients (benchmarks, load tests) hold many connections open at once.
        backlog=2048,
        timeout_keep_alive=30,
        # Streams can stall for minutes on purpose: do not let them hold up a shutdown (the
        # drain has ended them already; this bounds a client that does not read).
        timeout_graceful_shutdown=1,
    )
    return _DrainingServer(config, app)


class MockServer(MockAddress):
    """The mock in a background thread (a real uvicorn server on a real socket).

    ::

        with MockServer(MockConfig(seed=7)) as mock:
            with openai.OpenAI(base_url=mock.base_url, api_key="x") as client:
                ...
    """

    def __init__(self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0):
        if config is not None and config.workers > 1:
            raise ValueError(
                f"MockServer runs one worker in a thread; for workers={config.workers} use "
                "mockllm.MockProcess, which runs them in processes of their own."
            )
        self.app = MockApp(config)
        self.host = host
        self._sock = bind_socket(host, port)
        self.port: int = self._sock.getsockname()[1]
        self._server = make_uvicorn_server(self.app, loop="asyncio")
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> MockServer:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])),
            name=f"mockllm:{self.port}",
            daemon=True,
        )
        self._thread.start()
        started = threading.Event()

        def check() -> None:
            while not self._server.started and self._thread is not None and self._thread.is_alive():
                threading.Event().wait(0.005)
            started.set()

        checker = threading.Thread(target=check, daemon=True)
        checker.start()
        if not started.wait(timeout) or not self._server.started:
            raise RuntimeError("mockllm server did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.request_exit()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
