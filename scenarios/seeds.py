"""Every random decision of a scenario run derives from one root seed.

A run has a root seed (``--seed N``, or one drawn once and printed). Each consumer gets its
own sub-seed from a label, so adding a consumer never shifts another's sequence and two runs
with the same root seed make the same decisions: the mock's timing, the fault proxy's jitter
and toxicity draws, the clients' think times and the fault schedule.

The derivation is a hash, not ``random.Random(root).randint`` chains, because a chain makes
every sub-seed depend on the order in which consumers ask for theirs.
"""

from __future__ import annotations

import hashlib
import random

__all__ = [
    "MAX_SEED",
    "SeedTree",
    "check_seed",
    "derive_seed",
    "new_root_seed",
    "repetition_seed",
]

# Seeds stay within 31 bits: every consumer (CLI flags, HTTP headers, JSON) takes them as is.
MAX_SEED = 2**31 - 1


def derive_seed(root: int, *labels: str | int) -> int:
    """A sub-seed for ``labels`` under ``root``: stable across runs, machines and versions."""
    text = ":".join([str(root), *(str(label) for label in labels)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % MAX_SEED


def new_root_seed(rng: random.Random | None = None) -> int:
    """A fresh root seed for a run that was not given one (printed, so it can be replayed)."""
    return (rng or random.SystemRandom()).randint(1, MAX_SEED)


def check_seed(seed: int) -> int:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return seed


def repetition_seed(root: int, repetition: int) -> int:
    """The root seed of the ``repetition``-th run of ``--repeat``: the first is ``root`` itself.

    Each repetition has its own root seed (printed with its verdict), so ``replay <seed>``
    reproduces any one of them without knowing how many ran before it.
    """
    check_seed(root)
    return root if repetition == 0 else derive_seed(root, "repeat", repetition)


class SeedTree:
    """The sub-seeds of one scenario run, each named after what consumes it."""

    def __init__(self, root: int, scenario: str) -> None:
        check_seed(root)
        self.root = root
        self.scenario = scenario

    def seed(self, *labels: str | int) -> int:
        return derive_seed(self.root, self.scenario, *labels)

    def rng(self, *labels: str | int) -> random.Random:
        return random.Random(self.seed(*labels))

    @property
    def mock(self) -> int:
        return self.seed("mock")

    @property
    def proxy(self) -> int:
        return self.seed("proxy")

    def client(self, group: int, index: int) -> random.Random:
        return self.rng("client", group, index)

    def faults(self) -> random.Random:
        return self.rng("faults")
