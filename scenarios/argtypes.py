"""Argument types shared by our command lines (``type=`` of argparse options).

Here, the lowest package whose CLIs need them, so ``streamharness run`` and
``streamharness load`` (``loadtests.options``, which re-exports them) refuse a bad value with
the same words.
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
    """A whole number >= 1 (a count: users, repetitions, processes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
