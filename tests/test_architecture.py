"""Dependency arrows between our packages point one way (DESIGN section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"mockllm", "reference_server", "scenarios", "loadtests"}
# package -> our packages it must never import
FORBIDDEN = {
    "mockllm": {"reference_server", "scenarios", "loadtests"},
    "reference_server": {"scenarios", "loadtests"},
    "scenarios": {"loadtests"},
    "loadtests": set(),
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_downstream_packages(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import json\nfrom scenarios.stack import Stack\n")
    assert imported_packages(module) == {"scenarios"}
