"""Dependency arrows between our packages point one way (docs/architecture.md)."""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import sys
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


_STRAY_ERRORS = """
import sys
if sys.argv[1] == "loadtests":  # as Locust does, before anything imports ssl
    from gevent import monkey; monkey.patch_all()
import inspect, pkgutil
from importlib import import_module
package, root_module, root_name = sys.argv[1:]
root = getattr(import_module(root_module), root_name)
for info in pkgutil.walk_packages(import_module(package).__path__, package + "."):
    if info.name.endswith(("locustfile", "__main__")):
        continue  # importing these runs them
    module = import_module(info.name)
    for name, obj in vars(module).items():
        if (inspect.isclass(obj) and issubclass(obj, Exception)
                and obj.__module__ == module.__name__ and not issubclass(obj, root)):
            print(f"{info.name}.{name}")
"""


@pytest.mark.parametrize(
    ("package", "root"),
    [
        ("mockllm", "mockllm.errors.MockError"),
        ("scenarios", "scenarios.errors.HarnessError"),
        ("loadtests", "loadtests.errors.LoadTestError"),
    ],
)
def test_every_error_of_a_package_derives_from_its_root(package: str, root: str) -> None:
    # In a child: importing loadtests monkey-patches the interpreter for gevent.
    module, name = root.rsplit(".", 1)
    found = subprocess.run(
        [sys.executable, "-c", _STRAY_ERRORS, package, module, name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert found.returncode == 0, found.stderr
    assert sorted(set(found.stdout.split()) - NOT_ERRORS) == []


# Exceptions that are not errors of the package: signals that unwind a stack on purpose, and the
# admin client's exception, which carries the mock's own error answer (status and body) as data.
NOT_ERRORS = {
    "mockllm.respond.AbortConnection",  # makes uvicorn drop the socket (the abort fault)
    "mockllm.client.MockAdminError",  # the admin API answered an error: its body, as received
}
