"""Seed derivation: stable, independent per consumer."""

from __future__ import annotations

import random

import pytest

from scenarios.seeds import MAX_SEED, SeedTree, derive_seed, new_root_seed, repetition_seed


def test_derivation_is_stable_and_label_sensitive() -> None:
    assert derive_seed(42, "mock") == derive_seed(42, "mock")
    # pinned: a change here silently changes every replay command users saved
    assert derive_seed(42, "mock") == 642762311
    assert derive_seed(42, "mock") != derive_seed(42, "proxy")
    assert derive_seed(42, "mock") != derive_seed(43, "mock")
    assert 0 <= derive_seed(1, "x") <= MAX_SEED


def test_tree_separates_scenarios_and_consumers() -> None:
    a, b = SeedTree(5, "cancel"), SeedTree(5, "concurrency")
    assert a.mock != b.mock and a.mock != a.proxy
    assert a.client(0, 1).random() == SeedTree(5, "cancel").client(0, 1).random()
    assert a.client(0, 1).random() != a.client(0, 2).random()


def test_repetitions_have_their_own_roots() -> None:
    assert repetition_seed(9, 0) == 9
    seeds = {repetition_seed(9, k) for k in range(20)}
    assert len(seeds) == 20


def test_bad_seed() -> None:
    with pytest.raises(ValueError, match="seed must be between"):
        SeedTree(-1, "x")
    assert 1 <= new_root_seed(random.Random(3)) <= MAX_SEED
