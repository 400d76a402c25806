"""The mutation suite: every mutant still applies to the server's source, alone, in a copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.model import load_catalogue
from scenarios.mutation import MUTANTS, SERVER_PACKAGE, MutantError, apply, main, run_mutant
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


@pytest.mark.integration
async def test_a_mutant_runs_in_place_of_the_server_and_is_killed() -> None:
    # Token indexes from 1: the concurrency scenario's index check must see it. Also proves
    # the server started for a mutant runs the mutated copy, not the checkout's code.
    mutant = next(m for m in MUTANTS if m.id == "token_index_from_one")
    concurrency = [s for s in load_catalogue() if s.name == "concurrency"]
    result = await run_mutant(mutant, concurrency, 5)
    assert result.killed, [r.reason for r in result.errors]
    assert "missing [0]" in result.killed_by[0].reason


def test_every_mutant_names_the_scenarios_written_to_catch_it() -> None:
    from scenarios.mutation.killers import KILLERS

    names = {s.name for s in load_catalogue()}
    assert set(KILLERS) == {m.id for m in MUTANTS}
    assert {n for killers in KILLERS.values() for n in killers} <= names


@pytest.mark.integration
def test_the_score_below_the_target_fails_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    # A heartbeat bug is invisible to the concurrency scenario: it survives, the score is 0 %.
    args = ["--mutant", "hello_heartbeat_in_seconds", "--scenario", "concurrency"]
    assert main(args) == 1
    out = capsys.readouterr()
    assert "mutation score: 0 of 1 killed (0 %)" in out.out
    assert "survivor hello_heartbeat_in_seconds" in out.out
    assert "below the target of 95 %" in out.err
    assert main([*args, "--min-score", "0"]) == 0
