"""Where ``streamharness run`` and ``streamharness load`` put their reports.

By default every run gets a fresh folder ``streamharness-reports/<YYYYmmdd-HHMMSS>/`` in the
working directory, so the first command a user types leaves something to open and a second run
never overwrites the first. The parent folder carries a ``.gitignore`` of ``*``: reports never
end up in the user's commits, and the user's own ``.gitignore`` stays untouched.
``--report DIR`` chooses the folder; ``--no-report`` writes none.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

__all__ = ["DEFAULT_ROOT", "add_report_options", "chosen_report_dir", "new_report_dir"]

DEFAULT_ROOT = Path("streamharness-reports")
_STAMP = "%Y%m%d-%H%M%S"


def new_report_dir(root: Path = DEFAULT_ROOT, now: datetime | None = None) -> Path:
    """Create and return ``root/<timestamp>/`` (``-2``, ``-3``... when two runs share a second)
    and make sure ``root/.gitignore`` ignores everything below it."""
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# streamharness reports: never committed\n*\n", encoding="utf-8")
    stamp = (now or datetime.now()).strftime(_STAMP)
    for n in range(1, 1000):
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise FileExistsError(f"{root}: 999 report folders named {stamp}; remove some")


def add_report_options(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """``--report DIR`` and ``--no-report``; returns their group, for an alias of ``--report``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"write the reports to DIR (default: a new {DEFAULT_ROOT}/<timestamp>/)",
    )
    where.add_argument("--no-report", action="store_true", help="write no report files")
    return where


def chosen_report_dir(args: argparse.Namespace) -> Path | None:
    """The folder the options ask for, created: ``--report DIR``, none for ``--no-report``,
    else a new timestamped one under :data:`DEFAULT_ROOT`."""
    if args.no_report:
        return None
    if args.report is not None:
        folder: Path = args.report
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return new_report_dir()
