"""The package's public names exist (keeps ``__all__`` honest)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "scenarios.faultproxy",
        "scenarios.faultproxy.toxics",
        "scenarios.faultproxy.models",
        "scenarios.faultproxy.engine",
        "scenarios.faultproxy.api",
        "scenarios.faultproxy.client",
        "scenarios.faultproxy.cli",
        "scenarios.faultproxy.errors",
        "scenarios.faultproxy.bench",
    ],
)
def test_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"
