"""mockllm.config: the run-time config and PATCH /_mock/config (no sockets)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mockllm.config import MockConfig, apply_config_patch
from mockllm.errors import InvalidRequest


@pytest.mark.parametrize(
    "patch",
    [
        {"seed": 77, "profile": "warp"},
        {"seed": 77, "directives": True, "models": "gpt-4o"},
        {"models": ["a"], "seed": "77"},
        {"seed": 77, "profile": ["fast"]},
        {"seed": 77, "colour": "red"},
    ],
)
def test_a_refused_patch_changes_nothing(patch: dict[str, Any]) -> None:
    config = MockConfig()
    before = dataclasses.replace(config)
    with pytest.raises(InvalidRequest):
        apply_config_patch(config, patch)
    assert config == before


def test_a_good_patch_applies_every_field() -> None:
    config = MockConfig()
    apply_config_patch(
        config, {"seed": 77, "profile": "fast", "directives": True, "models": ["m1"]}
    )
    assert (config.seed, config.profile, config.directives, config.models) == (
        77,
        "fast",
        True,
        ("m1",),
    )
