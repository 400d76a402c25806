"""pytest plugin (``pytest11`` entry point ``mockllm``): a live mock server for your tests.

Fixtures:

- ``mockllm_server`` (session): a :class:`~mockllm.server.MockServer` on a free port (with
  ``--mockllm-workers N`` or the ini option ``mockllm_workers = N``, a
  :class:`~mockllm.process.MockProcess` of N worker processes).
- ``mockllm`` (function): a :class:`~mockllm.client.MockAdmin` for that server, reset before
  the test (ledger empty, no rules, default config) and configured by the ``mockllm`` marker::

      @pytest.mark.mockllm(seed=7, profile="fast", directives=True,
                           rules=[{"match": {"nth": 1}, "respond": {"fault": "status=503"}}])
      def test_retry(mockllm):
          with openai.OpenAI(base_url=mockllm.base_url, api_key="test") as client:
              ...
          assert mockllm.requests()[0]["outcome"] == "fault:status"

``@pytest.mark.mockllm(assert_all_rules_used=True)`` fails a test that passed if one of its
rules answered no request (the teardown's error lists them, and the closest rule of each
request no rule answered); ``mockllm.assert_all_rules_used()`` asserts the same at any point.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from mockllm.app import MockConfig
from mockllm.client import MockAdmin
from mockllm.config import workers_problem
from mockllm.process import MockProcess
from mockllm.server import MockServer

__all__ = ["mockllm", "mockllm_server"]

_MARKER_KEYS = {"seed", "profile", "directives", "models", "rules", "assert_all_rules_used"}
# Whether the test's own call failed: a failed test is not also failed for its unused rules.
_CALL_FAILED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "mockllm_workers",
        "processes of the session's mock server (default 1: a server in a thread)",
        default="1",
    )
    parser.addoption(
        "--mockllm-workers",
        metavar="N",
        help="processes of the session's mock server (overrides the mockllm_workers ini)",
    )


def _workers(config: pytest.Config) -> int:
    raw = config.getoption("--mockllm-workers") or config.getini("mockllm_workers")
    try:
        workers = int(str(raw))
    except ValueError:
        raise pytest.UsageError(
            f"mockllm workers must be an integer, got {raw!r} (--mockllm-workers / "
            "the mockllm_workers ini option)"
        ) from None
    problem = workers_problem(workers)
    if problem:
        raise pytest.UsageError(f"mockllm {problem} (--mockllm-workers / mockllm_workers)")
    return workers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mockllm(seed=, profile=, directives=, models=, rules=, assert_all_rules_used=): "
        "options for the mockllm fixture",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def mockllm_server(pytestconfig: pytest.Config) -> Iterator[MockServer | MockProcess]:
    """A mockllm server on 127.0.0.1, on a free port, started once per test session and
    stopped at its end; ``mockllm_server.url`` is its address. It is a
    :class:`~mockllm.server.MockServer` in a thread, or with ``--mockllm-workers N`` (ini
    ``mockllm_workers = N``) above 1 a :class:`~mockllm.process.MockProcess` of N workers.
    Its state is shared by every test: use the ``mockllm`` fixture, which resets it, rather
    than this one directly."""
    workers = _workers(pytestconfig)
    server: MockServer | MockProcess
    if workers > 1:
        server = MockProcess(MockConfig(workers=workers)).start()
    else:
        server = MockServer(MockConfig()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mockllm(
    mockllm_server: MockServer | MockProcess, request: pytest.FixtureRequest
) -> Iterator[MockAdmin]:
    """A :class:`~mockllm.client.MockAdmin` of the session's mock server (function scope):
    the server is reset before the test (ledger empty, no rules, default config), so point
    your client at ``mockllm.base_url`` and read ``mockllm.requests()`` afterwards.
    Configure it with the marker ``@pytest.mark.mockllm(seed=7, profile="fast",
    directives=True, models=[...], rules=[...], assert_all_rules_used=True)``; the last fails
    a passing test at teardown if one of its rules answered no request."""
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
    check_rules = bool(options.pop("assert_all_rules_used", False))
    if options:
        admin.configure(**options)
    if rules:
        admin.add_rules(list(rules))
    try:
        yield admin
        if check_rules and not request.node.stash.get(_CALL_FAILED, True):
            admin.assert_all_rules_used()
    finally:
        admin.close()
