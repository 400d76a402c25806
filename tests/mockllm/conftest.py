"""Fixtures for mockllm's own tests: the real CLI in a subprocess, and SDK clients for it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from mockllm.client import MockAdmin
from tests.support import start_cli


@pytest.fixture(scope="session")
def session_mock_url() -> Iterator[str]:
    """One mock for the worker's whole session; tests take it through ``mock_url``."""
    mock = start_cli("mockllm", "--port", "0", "--seed", "11")
    try:
        yield mock.url
    finally:
        mock.stop()


@pytest.fixture
def mock_url(session_mock_url: str) -> str:
    """The session's mock, reset: no rule, config or ledger entry of an earlier test on this
    worker leaks into this one (which tests share a worker depends on the scheduling)."""
    admin = MockAdmin(session_mock_url)
    try:
        admin.reset()
    finally:
        admin.close()
    return session_mock_url


@pytest.fixture
def admin(mock_url: str) -> Iterator[MockAdmin]:
    client = MockAdmin(mock_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def client(mock_url: str) -> Iterator[openai.OpenAI]:
    # max_retries=0: a fault must surface as the exception a user would see on the first try.
    with openai.OpenAI(base_url=f"{mock_url}/v1", api_key="test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture
async def aclient(mock_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{mock_url}/v1", api_key="test", max_retries=0)
