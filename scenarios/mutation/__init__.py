"""Mutation testing of the scenario catalogue: does it catch a server that breaks a promise?

Each mutant (:mod:`scenarios.mutation.mutants`) is one small, realistic bug in the reference
server, tied to one promise of ``docs/protocol.md``. :func:`apply` copies the server's package to
a temporary folder and makes the one edit there (the checkout is never touched); the catalogue
then runs against that copy (``RunOptions.server_pythonpath``). A mutant is **killed** when a
scenario fails on it; the score is the share killed. Run on demand:

    streamharness bench mutation [--seed 5] [--mutant ID ...] [--scenario NAME ...] [--first-kill]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mockllm.cliargs import CommandParser
from scenarios import model
from scenarios.errors import HarnessError
from scenarios.mutation.killers import KILLERS
from scenarios.mutation.mutants import MUTANTS, Mutant
from scenarios.report import ScenarioResult
from scenarios.runner import RunOptions, run_scenario

__all__ = ["MUTANTS", "Mutant", "MutantResult", "apply", "main", "markdown_table", "run_mutant"]

SERVER_PACKAGE = Path(__file__).resolve().parents[2] / "reference_server"


class MutantError(HarnessError):
    """A mutant that no longer applies to the server's source (its text moved or changed)."""


def apply(mutant: Mutant, into: Path, source: Path = SERVER_PACKAGE) -> Path:
    """Copy the server package into ``into`` and make the mutant's edit in the copy; returns
    the folder to put first on ``PYTHONPATH``."""
    target = into / source.name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    file = target / mutant.file
    text = file.read_text()
    found = text.count(mutant.old)
    if found != 1:
        raise MutantError(
            f"mutant {mutant.id}: {mutant.file} has {found} copies of the text to replace "
            "(it must have exactly one)"
        )
    file.write_text(text.replace(mutant.old, mutant.new))
    return into


@dataclass
class MutantResult:
    mutant: Mutant
    killed_by: list[ScenarioResult] = field(default_factory=list)
    errors: list[ScenarioResult] = field(default_factory=list)
    runs: int = 0
    duration_s: float = 0.0

    @property
    def killed(self) -> bool:
        return bool(self.killed_by)


async def run_mutant(
    mutant: Mutant,
    scenarios: Sequence[model.Scenario],
    seed: int,
    *,
    first_kill: bool = False,
) -> MutantResult:
    result = MutantResult(mutant)
    started = time.perf_counter()
    # The scenarios written for this promise first: a first kill comes fast.
    first = KILLERS.get(mutant.id, ())
    scenarios = sorted(
        scenarios,
        key=lambda s: (s.name not in first, first.index(s.name) if s.name in first else 0),
    )
    with tempfile.TemporaryDirectory(prefix=f"streamharness-mutant-{mutant.id}-") as tmp:
        path = apply(mutant, Path(tmp))
        options = RunOptions(server_pythonpath=str(path))
        for scenario in scenarios:
            run = await run_scenario(scenario, seed, options)
            result.runs += 1
            if run.verdict == "fail":
                result.killed_by.append(run)
                if first_kill:
                    break
            elif run.verdict == "error":
                result.errors.append(run)
    result.duration_s = time.perf_counter() - started
    return result


def _line(r: MutantResult) -> str:
    if r.killed:
        first = r.killed_by[0]
        why = first.reason.split(";")[0][:110]
        names = ", ".join(k.scenario for k in r.killed_by)
        return f"KILLED   {r.mutant.id:32} by {names}\n         {why}"
    errors = f" ({len(r.errors)} scenario errors)" if r.errors else ""
    return f"SURVIVED {r.mutant.id:32} {r.mutant.promise}{errors}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness bench mutation",
        description="Apply each mutant (a small bug in a promise of docs/protocol.md) to a copy "
        "of the reference server, run the scenario catalogue on it, print the mutation score "
        "and the survivors.",
        epilog=(
            "Examples:\n"
            "  streamharness bench mutation\n"
            "  streamharness bench mutation --mutant cancel_keeps_upstream --first-kill\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=5, help="root seed of every run (default 5)")
    parser.add_argument(
        "--mutant",
        action="append",
        default=[],
        metavar="ID",
        help="only this mutant (repeatable; default: all)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="only this scenario (repeatable; default: the catalogue)",
    )
    parser.add_argument(
        "--first-kill",
        action="store_true",
        help="stop a mutant's run at its first failing scenario",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=95.0,
        metavar="PCT",
        help="exit 1 when fewer than PCT %% of the mutants are killed (default: 95)",
    )
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the promise / mutant / killing check table to FILE",
    )
    args = parser.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.mutant or m.id in args.mutant]
    unknown = sorted(set(args.mutant) - {m.id for m in MUTANTS})
    if unknown:
        print(
            f"streamharness bench mutation: unknown mutant(s) {', '.join(unknown)}", file=sys.stderr
        )
        return 2
    if args.list:
        for m in mutants:
            print(f"{m.id:32} {m.file}: {m.promise}")
        return 0
    scenarios = model.select_scenarios(model.load_catalogue(), args.scenario)
    print(
        f"mutation: {len(mutants)} mutants x {len(scenarios)} scenarios, seed {args.seed}",
        flush=True,
    )
    results = []
    started = time.perf_counter()
    for i, mutant in enumerate(mutants, 1):
        result = asyncio.run(run_mutant(mutant, scenarios, args.seed, first_kill=args.first_kill))
        results.append(result)
        print(f"[{i}/{len(mutants)}] {_line(result)}  ({result.duration_s:.0f} s)", flush=True)
    killed = sum(r.killed for r in results)
    score = 100 * killed / max(1, len(results))
    print(
        f"\nmutation score: {killed} of {len(results)} killed "
        f"({score:.0f} %) in {time.perf_counter() - started:.0f} s"
    )
    survivors = [r for r in results if not r.killed]
    for r in survivors:
        print(f"  survivor {r.mutant.id}: {r.mutant.promise}")
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(results))
        print(f"table: {args.markdown}")
    if score < args.min_score:
        print(f"below the target of {args.min_score:g} %", file=sys.stderr)
        return 1
    return 0


def markdown_table(results: Sequence[MutantResult]) -> str:
    """One row per mutant: the promise it breaks, and the scenario check that caught it."""
    lines = [
        "| promise (docs/protocol.md) | mutant | caught by | the check's reason |",
        "|---|---|---|---|",
    ]
    for r in results:
        if r.killed:
            first = r.killed_by[0]
            failed = next((c for c in first.checks if not c.passed), None)
            check = f"`{first.scenario}`: {failed.check}" if failed else f"`{first.scenario}`"
            reason = (failed.reason if failed else first.reason).replace("|", "/")
            reason = reason if len(reason) <= 140 else reason[:140] + "..."
        else:
            check, reason = "**survived**", ""
        lines.append(f"| {r.mutant.promise} | `{r.mutant.id}` | {check} | {reason} |")
    return "\n".join(lines) + "\n"
