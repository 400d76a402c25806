"""loadtests has one exception root, and every exception it defines lives under it."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from loadtests import errors
from loadtests.errors import LoadTestError

PACKAGE = Path(errors.__file__).resolve().parent
_BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}


def test_every_exception_derives_from_the_root() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), LoadTestError), name


@pytest.mark.parametrize(
    ("name", "also"),
    [("MetricsError", ValueError), ("FrameError", ValueError), ("HttpStreamError", OSError)],
)
def test_second_bases_are_kept_for_existing_except_clauses(
    name: str, also: type[Exception]
) -> None:
    assert issubclass(getattr(errors, name), also)


def test_no_module_defines_an_exception_outside_errors_py() -> None:
    # A new exception elsewhere would be a second root the callers cannot catch as one.
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & _BUILTIN_EXCEPTIONS:
                    found.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert found == []


def test_old_import_places_still_work() -> None:
    from loadtests.cli import LoadError
    from loadtests.httpstream import HttpStreamError
    from loadtests.metrics import MetricsError
    from loadtests.wsframes import FrameError

    assert {LoadError, HttpStreamError, MetricsError, FrameError} <= {
        getattr(errors, n) for n in errors.__all__
    }
