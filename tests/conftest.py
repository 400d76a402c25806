"""Repository-wide pytest options (engine-specific fixtures live in each test folder)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--toxiproxy-url",
        default=None,
        help="run the fault proxy conformance tests against this Toxiproxy server "
        "(default: TOXIPROXY_URL, else the embedded server)",
    )
