"""Catalogue scenarios with the reference server speaking Anthropic Messages to the mock.

``streamharness run --provider anthropic``: the same scenarios, the same checks, the mock
answering in Anthropic's format; every upstream request of the run is an Anthropic one (its
ledger id is ``msg_...``), and a cancel is proven by the ledger there too.
"""

from __future__ import annotations

import pytest

from scenarios.model import load_catalogue
from scenarios.report import render_scenario_text
from scenarios.runner import RunOptions, replay_command, run_scenario

CATALOGUE = {s.name: s for s in load_catalogue()}
SEED = 31


@pytest.mark.integration
# stalled_reader's 75,000-token answers: the server must not cap them at its own default
# max_tokens (Anthropic's API requires one), or the flood that stalls the reader never comes.
@pytest.mark.parametrize(
    "name", ["mid_stream_cancel", "upstream_abort", "concurrency", "stalled_reader"]
)
async def test_passes_with_the_anthropic_provider(name: str) -> None:
    options = RunOptions(provider="anthropic")
    result = await run_scenario(CATALOGUE[name], SEED, options)
    assert result.verdict == "pass", render_scenario_text(result)
    ledger_ids = [i for s in result.streams for i in s.ledger_ids or ()]
    assert ledger_ids and all(i.startswith("msg_") for i in ledger_ids), ledger_ids
    assert result.replay == replay_command(SEED, name, options)
    assert result.replay.endswith("--provider anthropic")
    if name == "mid_stream_cancel":
        # The ledger's proof: each request ended within 500 ms of its stream's cancel.
        checks = zip(CATALOGUE[name].checks, result.checks, strict=True)
        [stopped] = [r for c, r in checks if c.check == "upstream_stopped_after_cancel"]
        assert stopped.passed and stopped.applicable, stopped.reason
        assert {s.outcome for s in result.streams} == {"cancelled"}


def test_the_replay_line_keeps_the_provider() -> None:
    assert replay_command(5, "jitter", RunOptions(provider="anthropic")) == (
        "streamharness replay 5 jitter --provider anthropic"
    )
    assert "--provider" not in replay_command(5, "jitter", RunOptions(provider="openai"))
