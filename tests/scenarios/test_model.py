"""Scenario schema and validation: pure, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios import model
from scenarios.model import (
    CatalogueError,
    Scenario,
    ScenarioFileError,
    UnknownScenarioError,
    parse_scenario,
    select_scenarios,
)

MINIMAL = """\
name: tiny
description: one client, one stream
expect: {reference: pass}
clients:
  - count: 2
checks:
  - check: every_stream_ended
"""


def problems_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "f.yaml")
    return info.value.problems


def test_minimal_scenario_gets_defaults() -> None:
    s = parse_scenario(MINIMAL)
    assert s.name == "tiny"
    assert s.stack.nginx is False and s.stack.upstream_proxy is False
    assert s.mock.profile == "instant"
    assert s.clients[0].count == 2
    assert s.clients[0].transport == "default"
    assert s.all_needs == frozenset()
    assert isinstance(s.checks[0], model.EveryStreamEnded)
    assert s.checks[0].outcomes == ["completed"]


def test_full_scenario_parses_every_part() -> None:
    s = parse_scenario(
        """\
name: full
description: d
tags: [cancel, ws]
expect: {reference: pass, naive: fail}
stack:
  nginx: true
  nginx_read_timeout_s: 1.5
  upstream_proxy: true
  downstream_proxy: true
  server_env: {HEARTBEAT_INTERVAL_S: 0.5, FLAG: true}
mock: {profile: fast, model: mock-fast, rules: [{match: {model: x}}]}
toxics:
  - {proxy: downstream, type: reset_peer, attributes: {timeout: 0}, after_tokens: 3}
  - {proxy: upstream, type: latency, attributes: {latency: 100, jitter: 10}, after_ms: 50,
     duration_ms: 200, jitter_ms: 20}
events:
  - {do: restart_server, after_ms: 300}
clients:
  - name: readers
    count: 3
    actions: [{at_token: 2, do: drop_and_resend, reconnect_after_ms: 10}]
checks:
  - {check: ttft, stat: p95, max_ms: 500, groups: [readers]}
  - {check: upstream_stopped_after_cancel, within_ms: 300}
  - {check: close_code, code: 1006}
  - {check: error_code, code: upstream_error, retryable: true}
  - {check: no_leaks}
  - {check: upstream_requests, min: 1, max: 1}
"""
    )
    assert s.stack.server_env == {"HEARTBEAT_INTERVAL_S": "0.5", "FLAG": "true"}
    assert s.toxics[0].trigger == "after 3 tokens"
    assert s.toxics[1].trigger == "after 50 ms"
    assert s.toxics[0].toxic_name == "reset_peer_downstream"
    assert s.needs_nginx
    assert s.all_needs == {"restartable"}
    assert s.checks[3].all_needs == {"error_codes"} and s.checks[4].all_needs == {"stats"}
    assert isinstance(s.checks[0], model.TtftBand) and s.checks[0].stat == "p95"


def test_models_are_frozen_and_compare_equal() -> None:
    assert parse_scenario(MINIMAL) == parse_scenario(MINIMAL)
    s = parse_scenario(MINIMAL)
    with pytest.raises(Exception, match="frozen"):
        s.name = "other"  # type: ignore[misc]


def test_unknown_field_names_file_line_and_field() -> None:
    text = MINIMAL.replace("  - count: 2\n", "  - count: 2\n    colour: red\n")
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "cat/tiny.yaml")
    assert str(info.value) == "cat/tiny.yaml:6: clients[0].colour: unknown field"


def test_bad_value_points_at_its_line() -> None:
    text = MINIMAL.replace("count: 2", "count: 0")
    assert problems_of(text) == [
        (5, "clients[0].count", "Input should be greater than or equal to 1")
    ]


def test_unknown_check_lists_the_known_ones() -> None:
    text = MINIMAL.replace("every_stream_ended", "every_stream_endde")
    [(line, field, message)] = problems_of(text)
    assert (line, field) == (7, "checks[0]")
    assert "unknown check 'every_stream_endde'" in message and "every_stream_ended" in message


def test_field_inside_a_check_keeps_its_name() -> None:
    text = MINIMAL + "  - check: ttft\n    max_ms: -5\n"
    [(line, field, _)] = problems_of(text)
    assert (line, field) == (9, "checks[1].max_ms")


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL.replace("count: 2", "count: 0\n    bogus: 1").replace(
        "description: one client, one stream\n", ""
    )
    fields = {field for _, field, _ in problems_of(text)}
    assert fields == {"description", "clients[0].count", "clients[0].bogus"}


def test_invalid_yaml_names_the_line() -> None:
    [(line, _, message)] = problems_of("name: x\nclients: [1, 2\n")
    assert line is not None and line >= 2
    assert message.startswith("invalid YAML")


def test_duplicate_keys_are_refused() -> None:
    assert problems_of(MINIMAL + "name: again\n") == [(8, "name", "duplicate key")]


def test_not_a_mapping() -> None:
    assert problems_of("- a\n- b\n") == [(1, "", "a scenario file must be a YAML mapping")]


def test_toxic_attributes_are_checked_per_type() -> None:
    text = MINIMAL + (
        "stack: {downstream_proxy: true}\n"
        "toxics:\n  - {proxy: downstream, type: latency, attributes: {latnecy: 5}}\n"
    )
    [(line, field, message)] = problems_of(text)
    assert (line, field) == (10, "toxics[0]")
    assert "unknown attribute(s) latnecy for a latency toxic (allowed: jitter, latency)" in message


def test_toxic_needs_its_proxy_in_the_stack() -> None:
    text = MINIMAL + "toxics:\n  - {proxy: upstream, type: timeout}\n"
    [(_, _, message)] = problems_of(text)
    assert "uses the upstream proxy but stack.upstream_proxy is false" in message


def test_one_trigger_only() -> None:
    text = MINIMAL + (
        "stack: {downstream_proxy: true}\n"
        "toxics:\n  - {proxy: downstream, type: noop, after_ms: 1, after_tokens: 2}\n"
    )
    [(_, _, message)] = problems_of(text)
    assert "at most one of after_tokens and after_ms" in message


def test_band_needs_a_bound_and_an_order() -> None:
    assert "give min_ms, max_ms or both" in problems_of(MINIMAL + "  - check: itl\n")[0][2]
    text = MINIMAL + "  - {check: itl, min_ms: 5, max_ms: 1}\n"
    assert "min_ms is larger than max_ms" in problems_of(text)[0][2]


def test_needs_follow_from_clients_and_events() -> None:
    text = MINIMAL.replace(
        "  - count: 2\n",
        "  - count: 2\n    actions: [{at_token: 1, do: cancel}]\n"
        "  - {transport: sse, on_disconnect: resume}\n"
        "  - {concurrent: true, shared_client_id: true}\n",
    ).replace("expect: {reference: pass}", "expect: {reference: pass}\nneeds: [stats]")
    assert parse_scenario(text).all_needs == {
        "cancel_message",
        "v1_http",
        "resume",
        "several_streams",
        "client_id_in_url",
        "stats",
    }


def test_workers_need_nginx_and_the_reference_server() -> None:
    text = MINIMAL + "stack: {server_workers: 2}\n"
    assert "server_workers > 1 needs nginx: true" in problems_of(text)[0][2]
    text = MINIMAL + "stack: {server_workers: 2, nginx: true, downstream_proxy: true}\n"
    assert "use the upstream proxy" in problems_of(text)[0][2]
    text = MINIMAL + "stack: {store: postgres}\n"
    assert "stack.store" in problems_of(text)[0][1]
    workers = parse_scenario(MINIMAL + "stack: {server_workers: 2, nginx: true, store: redis}\n")
    assert "several_workers" in workers.all_needs
    assert "several_workers" in parse_scenario(MINIMAL + "stack: {store: redis}\n").all_needs
    assert "several_workers" not in parse_scenario(MINIMAL).all_needs


def test_memory_store_fails_names_checks_of_a_redis_scenario() -> None:
    redis = MINIMAL + "stack: {server_workers: 2, nginx: true, store: redis}\n"
    text = redis + "memory_store_fails: [upstream_requests]\n"
    assert "not a check of this scenario (every_stream_ended)" in problems_of(text)[0][2]
    text = MINIMAL + "memory_store_fails: [every_stream_ended]\n"
    assert "goes with stack.store: redis" in problems_of(text)[0][2]
    scenario = parse_scenario(redis + "memory_store_fails: [every_stream_ended]\n")
    on_memory = scenario.on_store("memory")
    assert on_memory.stack.store == "memory" and on_memory.stack.server_workers == 2
    assert scenario.on_store("redis") is scenario and scenario.stack.store == "redis"


def test_redis_and_worker_events_fit_the_stack() -> None:
    text = MINIMAL + "events: [{do: restart_redis, after_ms: 5}]\n"
    assert "restarts Redis but stack.store is not redis" in problems_of(text)[0][2]
    workers = MINIMAL + "stack: {server_workers: 2, nginx: true, store: redis}\n"
    text = workers + "events: [{do: kill_worker, worker: 3}]\n"
    assert "kills worker 3 of 2" in problems_of(text)[0][2]
    text = workers + "events: [{do: kill_worker}]\n"
    assert "kill_worker takes worker" in problems_of(text)[0][2]
    text = workers + "events: [{do: restart_redis, worker: 1}]\n"
    assert "kill_worker takes worker" in problems_of(text)[0][2]
    scenario = parse_scenario(workers + "events: [{do: kill_worker, worker: 2, after_tokens: 3}]\n")
    assert {"restartable", "several_workers"} <= scenario.all_needs
    retry = MINIMAL.replace("  - count: 2\n", "  - {count: 2, resend_after_errors: [owner_lost]}\n")
    assert "error_codes" in parse_scenario(retry).all_needs


def test_unknown_need() -> None:
    text = MINIMAL.replace("expect: {reference: pass}", "expect: {reference: pass}\nneeds: [x]")
    assert "needs[0]" in problems_of(text)[0][1]


def test_check_groups_must_exist() -> None:
    text = MINIMAL + "  - {check: indexes_dense, groups: [nobody]}\n"
    assert "unknown client group 'nobody'" in problems_of(text)[0][2]


def test_prompt_template_fields() -> None:
    text = MINIMAL.replace("count: 2", "count: 2\n    prompt: 'hi {user}'")
    assert "bad prompt template" in problems_of(text)[0][2]


def test_bad_name() -> None:
    assert "lower-case" in problems_of(MINIMAL.replace("name: tiny", "name: Tiny One"))[0][2]


def test_file_name_must_match(tmp_path: Path) -> None:
    path = tmp_path / "other.yaml"
    path.write_text(MINIMAL)
    with pytest.raises(ScenarioFileError, match=r"other.yaml:1: name: must equal the file name"):
        model.load_scenario_file(path)


def test_a_file_is_parsed_again_once_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(MINIMAL)
    first = model.load_scenario_file(path)
    assert model.load_scenario_file(path) is first  # unchanged: parsed once
    path.write_text(MINIMAL.replace("description: ", "description: changed "))
    again = model.load_scenario_file(path)
    assert again.description.startswith("changed ")
    path.write_text("name: tiny\n")
    with pytest.raises(ScenarioFileError, match="description: Field required"):
        model.load_scenario_file(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioFileError, match="cannot read"):
        model.load_scenario_file(tmp_path / "missing.yaml")


def test_catalogue_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(MINIMAL)
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "b.yaml").write_text("name: [\n")
    with pytest.raises(CatalogueError) as info:
        model.load_catalogue(tmp_path)
    assert [e.path for e in info.value.errors] == [
        str(tmp_path / "a.yaml"),
        str(tmp_path / "b.yaml"),
    ]
    assert "a.yaml:1: description: Field required" in str(info.value)


def _three() -> list[Scenario]:
    return [
        parse_scenario(MINIMAL.replace("name: tiny", f"name: {n}") + "tags: [t]\n" * (n == "c"))
        for n in ("a_one", "a_two", "c")
    ]


def test_select_by_name_glob_and_tag() -> None:
    catalogue = _three()
    assert [s.name for s in select_scenarios(catalogue, [])] == ["a_one", "a_two", "c"]
    assert [s.name for s in select_scenarios(catalogue, ["a_*"])] == ["a_one", "a_two"]
    assert [s.name for s in select_scenarios(catalogue, ["t", "a_two"])] == ["a_two", "c"]


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(
        UnknownScenarioError, match=r"unknown scenario 'a_tow' \(did you mean a_two"
    ):
        select_scenarios(_three(), ["a_tow"])
    with pytest.raises(UnknownScenarioError, match="'zzz'; 'streamharness list' shows the 3"):
        select_scenarios(_three(), ["zzz"])


def test_concurrent_messages_take_no_actions() -> None:
    text = MINIMAL.replace(
        "count: 2", "count: 2\n    concurrent: true\n    actions: [{at_token: 1, do: cancel}]"
    )
    assert "concurrent messages take no actions" in problems_of(text)[0][2]


def test_rules_are_scoped_to_the_scenarios_prompts() -> None:
    text = MINIMAL.replace(
        "clients:",
        "mock:\n  tokens: 4\n  rules:\n    - {match: {nth: 1}, respond: {fault: 'status=429'}}\n"
        "    - {match: {prompt: x}, respond: {tokens: 2}}\nclients:",
    )
    scenario = parse_scenario(text)
    assert scenario.rule_scope == "tiny"
    first, second, defaults = scenario.mock.rules_to_post(scenario.rule_scope)
    assert first["match"] == {"nth": 1, "prompt": "tiny"}
    assert second["match"] == {"prompt": "x"}
    assert defaults == {"id": "scenario-defaults", "respond": {"tokens": 4}}
    custom = parse_scenario(text.replace("count: 2", "count: 2\n    prompt: 'hi {word}'"))
    assert custom.rule_scope is None
