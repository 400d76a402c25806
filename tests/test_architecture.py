"""Dependency arrows between our packages point one way (docs/architecture.md)."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"mockllm", "reference_server", "scenarios", "loadtests", "streamharness"}
# package -> our packages it must never import. ``streamharness`` holds only the umbrella
# command, so it sits above all four and nothing imports it.
FORBIDDEN = {
    "mockllm": {"reference_server", "scenarios", "loadtests", "streamharness"},
    "reference_server": {"scenarios", "loadtests", "streamharness"},
    "scenarios": {"loadtests", "streamharness"},
    "loadtests": {"streamharness"},
    "streamharness": set(),
}
# A string that names a module of ours ("scenarios.stack"), or a package after "-m": the argument
# of importlib.import_module or of ``python -m``, an import the statements do not show. A bare
# package name elsewhere is prose or the command's name ("streamharness replay ...").
_MODULE_PATH = re.compile(r"({})(\.\w+)+".format("|".join(sorted(OURS))))


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_PATH.fullmatch(node.value):
                found.add(node.value.split(".")[0])
        elif isinstance(node, ast.List | ast.Tuple):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            found |= {str(w) for prev, w in itertools.pairwise(words) if prev == "-m"}
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


def test_the_check_sees_imports_by_string(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import importlib, subprocess, sys\n"
        'importlib.import_module("loadtests.cli")\n'
        'subprocess.run([sys.executable, "-m", "reference_server"])\n'
        '"""A docstring that mentions scenarios.stack is not an import."""\n'
        'print("streamharness run")\n'
    )
    assert imported_packages(module) == {"loadtests", "reference_server"}
