"""Live processes for the load-test tests: mockllm and the reference server, real CLIs.

Locust itself is never imported here (it monkey-patches the interpreter with gevent); tests
run it in a subprocess through ``streamharness load`` / ``bench``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import LiveStack, start_cli


@pytest.fixture(scope="module")
def live_stack() -> Iterator[LiveStack]:
    mock = start_cli("mockllm", "--host", "127.0.0.1", "--port", "0", "--directives")
    try:
        server = start_cli(
            "reference_server", "--host", "127.0.0.1", "--port", "0", "--upstream", f"{mock.url}/v1"
        )
        try:
            yield LiveStack(mock.url, server.url)
        finally:
            server.stop()
    finally:
        mock.stop()
