"""The mutation suite: every mutant still applies to the server's source, alone, in a copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.mutation import MUTANTS, SERVER_PACKAGE, MutantError, apply
from scenarios.mutation.mutants import Mutant


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_each_mutant_applies_once_to_a_copy(mutant: Mutant, tmp_path: Path) -> None:
    before = (SERVER_PACKAGE / mutant.file).read_text()
    path = apply(mutant, tmp_path)
    mutated = (path / "reference_server" / mutant.file).read_text()
    assert mutated != before and mutant.new in mutated
    assert (SERVER_PACKAGE / mutant.file).read_text() == before  # the checkout is untouched
    compile(mutated, mutant.file, "exec")


def test_mutant_ids_are_unique_and_promises_named() -> None:
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    assert all(m.promise.strip() for m in MUTANTS)


def test_a_mutant_whose_text_moved_is_refused(tmp_path: Path) -> None:
    stale = Mutant("stale", "nothing", "app.py", "this text is not in app.py", "x")
    with pytest.raises(MutantError, match="has 0 copies"):
        apply(stale, tmp_path)
