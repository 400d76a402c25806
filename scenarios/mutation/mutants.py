"""The mutants: one small, realistic bug each, in one promise of docs/protocol.md.

A mutant replaces one exact piece of text (``old``, found exactly once in ``file``, a path
inside ``reference_server/``) with ``new``. ``promise`` says what the server then gets wrong, in
the words of docs/protocol.md; the catalogue should fail on it with a reason that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MUTANTS", "Mutant"]


@dataclass(frozen=True)
class Mutant:
    id: str
    promise: str
    file: str
    old: str
    new: str


MUTANTS: tuple[Mutant, ...] = ()
