"""pytest plugin (``pytest11`` entry point ``mockllm``): a live mock server for your tests.

Fixtures:

- ``mockllm_server`` (session): a :class:`~mockllm.server.MockServer` on a free port.
- ``mockllm`` (function): a :class:`~mockllm.client.MockAdmin` for that server, reset before
  the test (ledger empty, no rules, default config) and configured by the ``mockllm`` marker::

      @pytest.mark.mockllm(seed=7, profile="fast", directives=True,
                           rules=[{"match": {"nth": 1}, "respond": {"fault": "status=503"}}])
      def test_retry(mockllm):
          with openai.OpenAI(base_url=mockllm.base_url, api_key="test") as client:
              ...
          assert mockllm.requests()[0]["outcome"] == "fault:status"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mockllm.app import MockConfig
from mockllm.client import MockAdmin
from mockllm.server import MockServer

__all__ = ["mockllm", "mockllm_server"]

_MARKER_KEYS = {"seed", "profile", "directives", "models", "rules"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mockllm(seed=, profile=, directives=, models=, rules=): options for the mockllm fixture",
    )


@pytest.fixture(scope="session")
def mockllm_server() -> Iterator[MockServer]:
    server = MockServer(MockConfig()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mockllm(mockllm_server: MockServer, request: pytest.FixtureRequest) -> Iterator[MockAdmin]:
    admin = MockAdmin(mockllm_server.url)
    admin.reset()
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("mockllm"))):
        options.update(marker.kwargs)
    unknown = set(options) - _MARKER_KEYS
    if unknown:
        raise pytest.UsageError(
            f"unknown mockllm marker option(s) {sorted(unknown)}; known: {sorted(_MARKER_KEYS)}"
        )
    rules = options.pop("rules", None)
    if options:
        admin.configure(**options)
    if rules:
        admin.add_rules(list(rules))
    try:
        yield admin
    finally:
        admin.close()
