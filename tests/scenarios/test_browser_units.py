"""The browser clients' pure parts: the page frame readers, the two page checks, the model's
rules for browser groups, and a browser scenario where Chromium is missing (skip, reason)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from scenarios import model
from scenarios.browser.frames import TutorialPageReader, V1PageReader
from scenarios.checks import Arrival, RunObservation, StreamObservation, run_check
from scenarios.clients.records import StreamRecord
from scenarios.model import ScenarioFileError, parse_scenario
from scenarios.runner import RunOptions, run_scenario

CHECK = TypeAdapter(model.Check)


def _page_stream(
    received: str, saved: str | None, shown: list[str], expected: str | None = None
) -> StreamObservation:
    return StreamObservation(
        key="pages/c0/m0",
        group="pages",
        client=0,
        message=0,
        prompt="p",
        transport="browser",
        arrivals=tuple(Arrival(i, ch, 0.1 + i / 100) for i, ch in enumerate(received)),
        expected_text=received if expected is None else expected,
        page="tutorial",
        saved_text=saved,
        shown=tuple((0.1 + i / 10, text) for i, text in enumerate(shown)),
    )


def _check(name: str, *streams: StreamObservation) -> tuple[bool, str]:
    result = run_check(CHECK.validate_python({"check": name}), RunObservation(streams=streams))
    return result.passed, result.reason


def test_saved_matches_mock_names_the_missing_tail() -> None:
    assert _check("saved_matches_mock", _page_stream("abcdef", "abcdef", []))[0]
    passed, reason = _check("saved_matches_mock", _page_stream("abcdef", "abcd", []))
    assert not passed
    assert "pages/c0/m0: differs at char 4" in reason and "the tail 'ef' missing" in reason
    passed, reason = _check("saved_matches_mock", _page_stream("abc", None, ["a"]))
    assert not passed and "the page saved no answer" in reason


def test_saved_matches_mock_needs_browser_pages() -> None:
    plain = StreamObservation("g0/c0/m0", "g0", 0, 0, "p", "ws", expected_text="x")
    passed, reason = _check("saved_matches_mock", plain)
    assert not passed and reason == "no browser page was run"


def test_shown_matches_received_catches_foreign_text_and_a_short_final_view() -> None:
    assert _check("shown_matches_received", _page_stream("abcd", "abcd", ["ab", "abcd", ""]))[0]
    # Shown text that is no beginning of what was received (another tab's tokens).
    passed, reason = _check("shown_matches_received", _page_stream("abcd", "abcd", ["xy"]))
    assert not passed and "did not receive for this message" in reason
    # Every snapshot a prefix, but the saved message is short of what was received.
    passed, reason = _check("shown_matches_received", _page_stream("abcd", "abc", ["ab"]))
    assert not passed and "it saved differs at char 3" in reason
    # Nothing saved: the last streaming text shown must be all of it.
    passed, reason = _check("shown_matches_received", _page_stream("abcd", None, ["ab", ""]))
    assert not passed and "it last showed differs at char 2" in reason


def _frame(**fields: Any) -> str:
    return json.dumps(fields)


def test_tutorial_reader_ends_at_the_in_band_end_and_counts_strays() -> None:
    record = StreamRecord(transport="browser", id="x")
    reader = TutorialPageReader(record, 0.0)
    for i, text in enumerate(["Hel", "lo", "[END]", "late"]):
        reader.feed(_frame(type="token", content=text), 1.0 + i)
    assert record.text == "Hello" and record.outcome == "completed"
    assert record.finish_reason == "end_marker" and reader.stray == 1


def test_v1_reader_follows_its_chat_through_a_restart() -> None:
    record = StreamRecord(transport="browser", id="x")
    reader = V1PageReader(record)
    reader.sent(_frame(type="chat", id="m1", messages=[]))
    frames = [
        _frame(type="hello", protocol="llm-stream.v1", session_id="s", resume_token="r"),
        _frame(type="start", id="m1", stream_id="st1", resume_token="t1", replay=False),
        _frame(type="token", id="m1", index=0, content="a"),
        _frame(type="token", id="other", index=0, content="zzz"),
        _frame(type="token", id="m1", index=1, content="b"),
        _frame(type="error", id="m1", code="server_shutdown", message="bye", retryable=True),
        _frame(type="error", stream_id="st1", code="unknown_stream", message="gone"),
        _frame(type="start", id="m1", stream_id="st2", resume_token="t2", replay=False),
        _frame(type="token", id="m1", index=0, content="a"),
        _frame(type="token", id="m1", index=1, content="b"),
        _frame(type="token", id="m1", index=2, content="c"),
        _frame(type="ping", ts=1),
        _frame(type="end", id="m1", finish_reason="stop", usage=None, tokens=3),
    ]
    for i, frame in enumerate(frames):
        reader.feed(frame, float(i))
    assert record.outcome == "completed" and record.expected_tokens == 3
    # The second generation starts again at 0: what the page had is dropped again.
    assert reader.new_generation == (2, 1)
    assert reader.errors_seen == [("server_shutdown", True), ("unknown_stream", False)]
    assert [a.content for a in record.arrivals] == ["a", "b", "a", "b", "c"]
    assert record.heartbeats == [11.0]


def test_v1_reader_ends_on_an_error_the_page_does_not_continue_after() -> None:
    record = StreamRecord(transport="browser", id="x")
    reader = V1PageReader(record)
    reader.sent(_frame(type="chat", id="m1", messages=[]))
    reader.feed(_frame(type="error", id="m1", code="upstream_error", message="503"), 1.0)
    assert record.outcome == "error" and record.error_code == "upstream_error"


BROWSER_SCENARIO = """
name: pages
description: a browser group
clients:
  - kind: browser
    page: {client: tutorial, cpu_slowdown: 4}
checks:
  - check: saved_matches_mock
"""


def test_a_browser_group_takes_no_protocol_options() -> None:
    assert parse_scenario(BROWSER_SCENARIO).clients[0].page.cpu_slowdown == 4
    bad = BROWSER_SCENARIO.replace(
        "    page:",
        "    actions: [{at_token: 1, do: cancel}]\n    on_disconnect: resume\n    page:",
    )
    with pytest.raises(ScenarioFileError) as err:
        parse_scenario(bad, "bad.yaml")
    assert "a browser group's pages do what their frontend does: drop actions, on_disconnect" in (
        str(err.value)
    )
    with pytest.raises(ScenarioFileError, match="page: goes with kind: browser"):
        parse_scenario(BROWSER_SCENARIO.replace("kind: browser", "kind: protocol"), "bad.yaml")
    with pytest.raises(ScenarioFileError, match="cpu_slowdown"):
        parse_scenario(BROWSER_SCENARIO.replace("cpu_slowdown: 4", "cpu_slowdown: 0.5"))


async def test_without_chromium_a_browser_scenario_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMHARNESS_CHROMIUM", "/nonexistent/chromium")
    result = await run_scenario(parse_scenario(BROWSER_SCENARIO), 1, RunOptions(target="naive"))
    assert result.verdict == "skip"
    assert result.reason.startswith(
        "browser unavailable: Chromium not found at /nonexistent/chromium (Debian: apt-get "
        "install chromium"
    )


async def test_a_profile_no_page_speaks_is_skipped_with_the_reason() -> None:
    scenario = parse_scenario(BROWSER_SCENARIO.replace("client: tutorial", "client: auto"))
    result = await run_scenario(
        scenario, 1, RunOptions(target="http://127.0.0.1:9", profile="openai")
    )
    assert result.verdict == "skip"
    assert result.reason == (
        "browser pages speak protocol v1 or the tutorial shape; profile 'openai' is neither"
    )


def test_the_html_report_embeds_each_browser_groups_screenshot() -> None:
    from scenarios.report import RunSummary, ScenarioResult
    from scenarios.report_html import render_html

    png = b"\x89PNG\r\n\x1a\nnot-really"
    result = ScenarioResult(
        scenario="pages", target="naive", seed=1, verdict="pass", screenshots={"tabs": png}
    )
    page = render_html(RunSummary(target="naive", seed=1, results=(result,), duration_s=1.0))
    assert 'src="data:image/png;base64,iVBORw0KGgpub3QtcmVhbGx5"' in page
    assert "Browser group tabs" in page


def test_report_json_keeps_what_the_page_showed_saved_and_its_screenshot() -> None:
    from scenarios.report import RunSummary, ScenarioResult, render_json, summary_from_dict

    stream = _page_stream("abcd", "abc", ["ab", "abc"])
    result = ScenarioResult(
        scenario="pages",
        target="naive",
        seed=1,
        verdict="fail",
        streams=(stream,),
        screenshots={"pages": b"\x89PNG..."},
    )
    summary = RunSummary(target="naive", seed=1, results=(result,), duration_s=1.0)
    (again,) = summary_from_dict(json.loads(render_json(summary))).results
    assert again.screenshots == {"pages": b"\x89PNG..."}
    (back,) = again.streams
    assert (back.page, back.saved_text, back.shown) == ("tutorial", "abc", stream.shown)
