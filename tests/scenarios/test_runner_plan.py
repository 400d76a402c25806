"""The runner's pure parts: the seeded plan, the replay command, the observation of streams."""

from __future__ import annotations

from scenarios.clients import StreamRecord
from scenarios.drivers import StreamState
from scenarios.model import load_catalogue, parse_scenario
from scenarios.observe import observation
from scenarios.plan import ClientPlan, describe_plan, plan_run
from scenarios.report import Bound
from scenarios.runner import RunOptions, bounds_of, replay_command

SCENARIO = parse_scenario(
    """\
name: planned
description: d
expect: {reference: pass, naive: fail}
stack: {downstream_proxy: true}
toxics:
  - {proxy: downstream, type: latency, attributes: {latency: 10}}
  - {proxy: downstream, type: reset_peer, name: rp, after_tokens: 3, jitter_ms: 50,
     duration_ms: 100}
events:
  - {do: restart_server, after_ms: 200, jitter_ms: 30}
clients:
  - name: a
    count: 3
    messages: 2
    start_jitter_ms: 100
    think_ms: 40
checks:
  - check: every_stream_ended
"""
)


def test_same_seed_same_plan() -> None:
    assert plan_run(SCENARIO, 11) == plan_run(SCENARIO, 11)
    for scenario in load_catalogue():
        assert plan_run(scenario, 5) == plan_run(scenario, 5), scenario.name


def test_plan_in_words_changes_with_the_seed() -> None:
    words = describe_plan(plan_run(SCENARIO, 11))
    assert words == describe_plan(plan_run(SCENARIO, 11))
    assert words != describe_plan(plan_run(SCENARIO, 12))
    assert words[0].startswith("seeds: mock ")
    assert any(line.startswith("reset_peer toxic 'rp'") and " + " in line for line in words)
    assert any(line.startswith("client a-0 (default) starts at +") for line in words)


def test_other_seed_other_draws() -> None:
    a, b = plan_run(SCENARIO, 11), plan_run(SCENARIO, 12)
    assert a.mock_seed != b.mock_seed and a.proxy_seed != b.proxy_seed
    assert [c.start_delay_ms for c in a.clients] != [c.start_delay_ms for c in b.clients]
    assert [x.delay_ms for x in a.actions] != [x.delay_ms for x in b.actions]


def test_plan_contents() -> None:
    plan = plan_run(SCENARIO, 11)
    latency, reset, restart = plan.actions
    assert latency.at_start and latency.toxic == {
        "name": "latency_downstream",
        "type": "latency",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"latency": 10},
    }
    assert reset.after_tokens == 3 and 0 <= reset.delay_ms <= 50 and reset.duration_ms == 100
    assert restart.kind == "restart_server" and restart.after_ms == 200
    assert 0 <= restart.delay_ms <= 30
    assert [c.client_id for c in plan.clients] == ["a-0", "a-1", "a-2"]
    for c in plan.clients:
        assert 0 <= c.start_delay_ms <= 100
        assert len(c.think_ms) == 1 and 0 <= c.think_ms[0] <= 40
        assert len(c.prompts) == 2 and c.prompts[0].startswith(f"planned client {c.client_id} ")
    # every prompt of a run is unique: it ties each stream to its upstream requests
    prompts = [p for c in plan.clients for p in c.prompts]
    assert len(set(prompts)) == len(prompts)


def test_replay_command_names_the_target_and_its_profile() -> None:
    assert replay_command(5, "jitter") == "streamharness replay 5 jitter"
    naive = RunOptions(target="naive")
    assert replay_command(5, "jitter", naive) == "streamharness replay 5 jitter --target naive"
    mine = RunOptions(target="ws://127.0.0.1:9000", profile="my app.yaml", mock_port=9800)
    assert replay_command(5, "jitter", mine) == (
        "streamharness replay 5 jitter --target ws://127.0.0.1:9000 "
        "--target-profile 'my app.yaml' --mock-port 9800"
    )


def _state(records: list[StreamRecord]) -> StreamState:
    plan = ClientPlan(0, "g0", 1, "g0-1", "default", 0.0, (), ("hello",))
    state = StreamState(plan, 0, records=records, sent_at=10.0, sent_at_epoch=1000.0)
    return state


def test_observation_merges_attempts_and_times_from_the_request() -> None:
    first = StreamRecord(transport="tutorial", id="t1", sent_at=10.0)
    first.add(0, "a", 10.1)
    first.finish("disconnected", 10.2)
    second = StreamRecord(transport="tutorial", id="t2", sent_at=10.5)
    second.add(0, "a", 10.6)
    second.add(1, "b", 10.7)
    second.finish("completed", 10.8)
    state = _state([first, second])
    state.close_codes.append(1006)
    obs = observation(state, "ab", t0=9.0)
    assert obs.key == "g0/c1/m0" and obs.text == "aab" and obs.outcome == "completed"
    assert obs.close_code == 1006 and obs.attempts == 2
    assert round(obs.ttft_s or 0, 3) == 0.1 and round(obs.sent_t, 3) == 1.0
    assert round(obs.ended_t or 0, 3) == 0.8


def test_observation_drops_tokens_a_new_generation_sent_again() -> None:
    record = StreamRecord(transport="ws", id="m0", sent_at=10.0)
    for i, ch in enumerate("abc"):
        record.add(i, ch, 10.1 + i / 100)
    for i, ch in enumerate("abcdef"):  # after a restart: a new generation from index 0
        record.add(i, ch, 11.0 + i / 100)
    record.finish("completed", 11.1)
    state = _state([record])
    state.dedupe_from = (3, 2)
    obs = observation(state, "abcdef", t0=10.0)
    assert obs.text == "abcdef" and [a.index for a in obs.arrivals] == [0, 1, 2, 3, 4, 5]
    assert "discarded 3 re-sent tokens <= index 2" in obs.notes


def test_shared_client_id_keeps_prompts_unique() -> None:
    scenario = parse_scenario(
        "name: s\ndescription: d\nexpect: {reference: pass}\n"
        "clients: [{count: 2, shared_client_id: true}, {count: 1}]\n"
        "checks: [{check: every_stream_ended}]\n"
    )
    a, b, c = plan_run(scenario, 1).clients
    assert a.url_id == b.url_id == "g0-shared" and c.url_id == "g1-0"
    assert a.prompts != b.prompts and a.client_id != b.client_id


def test_a_fault_due_at_0_ms_is_in_place_before_the_clients_start() -> None:
    scenario = parse_scenario(
        "name: s\ndescription: d\nstack: {downstream_proxy: true}\n"
        "toxics:\n  - {proxy: downstream, type: bandwidth, attributes: {rate: 2}, after_ms: 0}\n"
        "  - {proxy: downstream, type: latency, name: later, attributes: {latency: 5}, "
        "after_ms: 1}\n"
        "clients: [{count: 1}]\nchecks: [{check: every_stream_ended}]\n"
    )
    zero, later = plan_run(scenario, 1).actions
    assert zero.at_start and not later.at_start


def test_the_limits_of_band_checks_go_to_the_report() -> None:
    by_name = {s.name: s for s in load_catalogue()}
    assert bounds_of(by_name["four_transports"]) == (
        Bound("ttft", "ttft p50 <=", 250.0),
        Bound("ttft", "ttft each >=", 250.0),
    )
    assert bounds_of(by_name["concurrency"]) == ()
