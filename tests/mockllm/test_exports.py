"""mockllm's public API is exactly what ``__all__`` says, and the package stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

import mockllm

PACKAGE = Path(mockllm.__file__).parent
OURS = {"reference_server", "scenarios", "loadtests"}


def test_all_names_exist() -> None:
    for name in mockllm.__all__:
        assert hasattr(mockllm, name), name


def test_public_api() -> None:
    assert set(mockllm.__all__) == {
        "InvalidRequest",
        "MockAdmin",
        "MockAdminError",
        "MockApp",
        "MockConfig",
        "MockError",
        "MockProcess",
        "MockServer",
        "NotFound",
        "RuleError",
        "fingerprint",
        "redact_header",
    }


def test_mockllm_imports_nothing_from_our_other_packages() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in OURS, f"{path.name} imports {name}"
