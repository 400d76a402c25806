"""mockllm: a deterministic OpenAI-compatible streaming provider with a request ledger.

Start it with ``python -m mockllm --port 0`` (or ``streamharness mock``), point an OpenAI
client at the printed base URL, and inspect what it received under ``/_mock/``.
See docs/mockllm.md.
"""

from mockllm.app import MockApp, MockConfig
from mockllm.client import MockAdmin, MockAdminError
from mockllm.errors import InvalidRequest, MockError, NotFound, RuleError
from mockllm.server import MockServer

__all__ = [
    "InvalidRequest",
    "MockAdmin",
    "MockAdminError",
    "MockApp",
    "MockConfig",
    "MockError",
    "MockServer",
    "NotFound",
    "RuleError",
]
