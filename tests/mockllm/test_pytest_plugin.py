"""The pytest plugin's ``mockllm`` fixture and marker, used exactly as a user would."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from mockllm.client import MockAdmin

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration


def test_fixture_serves_and_records(mockllm: MockAdmin) -> None:
    with openai.OpenAI(base_url=mockllm.base_url, api_key="test", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    (entry,) = mockllm.requests()
    assert entry["text"] == text and entry["outcome"] == "completed"


def test_each_test_starts_with_an_empty_ledger(mockllm: MockAdmin) -> None:
    assert mockllm.requests() == []
    assert mockllm.rules() == []


@pytest.mark.mockllm(
    seed=3,
    profile="fast",
    rules=[{"match": {"nth": 1}, "respond": {"fault": "status=503"}}],
)
def test_marker_options(mockllm: MockAdmin) -> None:
    assert mockllm.config()["profile"] == "fast"
    assert mockllm.config()["seed"] == 3
    # Closed: a pooled keep-alive socket left to the garbage collector fails a later test.
    with openai.OpenAI(base_url=mockllm.base_url, api_key="test", max_retries=1) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.choices[0].message.content
    assert [e["outcome"] for e in mockllm.requests()] == ["fault:status", "completed"]


def test_marker_options_do_not_leak(mockllm: MockAdmin) -> None:
    assert mockllm.config()["profile"] == "instant"
    assert mockllm.rules() == []


async def test_async_client_with_the_fixture(mockllm: MockAdmin) -> None:
    async with openai.AsyncOpenAI(base_url=mockllm.base_url, api_key="test") as client:
        completion = await client.chat.completions.create(
            model="mock-instant", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.choices[0].message.content


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester with the loop-scope setting our own pyproject sets (pytest-asyncio warns)."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    assert result.ret == 0
    text = result.stdout.str()
    assert "no docstring available" not in text.split("mockllm_server")[1]
    result.stdout.re_match_lines([r"mockllm_server \[session scope\]", r"\s+A mockllm server"])
    result.stdout.re_match_lines([r"mockllm -- ", r"\s+A :class:`~mockllm.client.MockAdmin`"])
    assert "assert_all_rules_used" in text


_UNUSED_RULE = """
import openai
import pytest

@pytest.mark.mockllm(assert_all_rules_used=True, rules=[
    {"id": "r1", "match": {"model": "gpt-4o-mini"}, "respond": {"text": "A"}},
    {"id": "used", "match": {"model": "mock-fast"}, "times": 1, "respond": {"text": "B"}},
])
def test_one_rule_unused(mockllm):
    with openai.OpenAI(base_url=mockllm.base_url, api_key="k", max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(
                model="mock-fast", messages=[{"role": "user", "content": "Hi"}])
    BODY
"""


def test_marker_fails_a_passing_test_whose_rule_answered_nothing(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(_UNUSED_RULE.replace("BODY", "pass"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*1 mockllm rule(s) answered no request:*",
            "*rule 'r1' match={'model': 'gpt-4o-mini'} (its match held for 0 request(s))",
            "*1 request(s) matched no rule:*",
            "*#2 model='mock-fast': closest rule 'r1': model 'mock-fast' != 'gpt-4o-mini'*",
        ]
    )
    assert "'used'" not in result.stdout.str().split("answered no request")[1]


def test_marker_adds_nothing_to_a_failed_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_UNUSED_RULE.replace("BODY", "assert False, 'own failure'"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "answered no request" not in result.stdout.str()


@pytest.mark.mockllm(
    assert_all_rules_used=True,
    rules=[{"id": "r1", "match": {"model": "gpt-4o-mini"}, "respond": {"text": "A"}}],
)
def test_marker_passes_when_every_rule_answered(mockllm: MockAdmin) -> None:
    with openai.OpenAI(base_url=mockllm.base_url, api_key="k", max_retries=0) as client:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    mockllm.assert_all_rules_used()


def test_near_miss_in_the_ledger_and_in_a_wait_timeout(mockllm: MockAdmin) -> None:
    mockllm.add_rule(id="r1", match={"model": "gpt-4o-mini", "prompt": "weather"}, respond={})
    with openai.OpenAI(base_url=mockllm.base_url, api_key="k", max_retries=0) as client:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    (entry,) = mockllm.requests()
    assert entry["rule_id"] is None
    assert entry["near_miss"] == "rule 'r1': prompt 'Hi' does not match /weather/"
    with pytest.raises(TimeoutError) as info:
        mockllm.wait(2, timeout=0.2)
    assert "closest rule 'r1': prompt 'Hi' does not match /weather/" in str(info.value)
    with pytest.raises(AssertionError, match="rule 'r1' match="):
        mockllm.assert_all_rules_used()


AGENT_TURN: list[Any] = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny."},
]


@pytest.mark.mockllm(
    rules=[{"id": "after-search", "match": {"tool_result_for": "search"}, "respond": {}}]
)
def test_unused_rule_report_explains_a_conversation_mismatch(mockllm: MockAdmin) -> None:
    with openai.OpenAI(base_url=mockllm.base_url, api_key="k", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=AGENT_TURN)
    with pytest.raises(AssertionError) as info:
        mockllm.assert_all_rules_used()
    report = str(info.value)
    assert "rule 'after-search' match={'tool_result_for': 'search'}" in report
    assert (
        "closest rule 'after-search': the last tool result is for 'get_weather' "
        "(call 'call_1'), not 'search'"
    ) in report


def test_x_mock_fault_header_applies_to_every_retry(mockllm: MockAdmin) -> None:
    headers = {"X-Mock-Fault": "status=429;retry_after=0"}
    with (
        openai.OpenAI(
            base_url=mockllm.base_url, api_key="k", max_retries=2, default_headers=headers
        ) as client,
        pytest.raises(openai.RateLimitError),
    ):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert [e["outcome"] for e in mockllm.requests()] == ["fault:status"] * 3


@pytest.mark.mockllm(
    assert_all_rules_used=True,
    rules=[{"times": 1, "respond": {"fault": "status=429;retry_after=0"}}],
)
def test_429_then_success_is_a_rule_with_times_1(mockllm: MockAdmin) -> None:
    with openai.OpenAI(base_url=mockllm.base_url, api_key="k", max_retries=2) as client:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
        )
    assert completion.choices[0].message.content
    entries = mockllm.requests()
    assert [(e["status"], e["outcome"]) for e in entries] == [
        (429, "fault:status"),
        (200, "completed"),
    ]
    assert entries[1]["near_miss"] == "rule 'rule-1': times 1 already used"


_WORKERS = """
import httpx
import pytest

@pytest.mark.mockllm(rules=[{"match": {}, "times": 1, "respond": {"text": "once"}}])
def test_served_by_every_worker(mockllm):
    texts = []
    for i in range(20):
        answer = httpx.post(mockllm.base_url + "/chat/completions", json={
            "model": "mock-fast", "messages": [{"role": "user", "content": str(i)}]})
        texts.append(answer.json()["choices"][0]["message"]["content"])
    assert texts.count("once") == 1 and texts[0] == "once"
    entries = mockllm.requests()
    assert [e["seq"] for e in entries] == list(range(1, 21))
    assert {e["worker"] for e in entries} == {0, 1}

def test_reset_between_tests(mockllm):
    assert mockllm.requests() == [] and mockllm.rules() == []
"""


def test_the_session_mock_can_run_several_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_WORKERS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--mockllm-workers", "2")
    result.assert_outcomes(passed=2)


def test_a_bad_worker_count_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(_WORKERS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--mockllm-workers", "zero")
    assert result.ret != 0
    assert "mockllm workers must be an integer, got 'zero'" in result.stdout.str()
