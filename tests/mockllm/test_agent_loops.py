"""Agent loops against a live mock: real framework clients run a tool call, its result, then
an answer, and finish with no configuration beyond "call this tool"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from agents import (
    Agent,
    MaxTurnsExceeded,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    function_tool,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from mockllm.client import MockAdmin

pytestmark = pytest.mark.integration

CALLS: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    CALLS.append(city)
    return f"Sunny in {city}, 24 degrees."


@tool
def lookup(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


Make = Callable[..., Agent[Any]]


@pytest.fixture
async def make_agent(mock_url: str, admin: MockAdmin) -> AsyncIterator[Make]:
    """Agents on the chat completions API of the mock (``admin`` resets it first), each with
    its own client, closed at teardown; ``headers`` go with every request of the loop."""
    clients: list[openai.AsyncOpenAI] = []

    def make(headers: dict[str, str] | None = None) -> Agent[Any]:
        client = openai.AsyncOpenAI(
            base_url=f"{mock_url}/v1", api_key="test", max_retries=0, default_headers=headers
        )
        clients.append(client)
        model = OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client)
        return Agent(
            name="weather", instructions="Answer briefly.", model=model, tools=[get_weather]
        )

    yield make
    for client in clients:
        await client.close()


RUN = RunConfig(tracing_disabled=True)


def roles(admin: MockAdmin) -> list[list[str]]:
    return [[m["role"] for m in e["body"]["messages"]] for e in admin.requests()]


async def test_agents_sdk_loop_with_a_tool_header_ends_with_text_in_two_turns(
    make_agent: Make, admin: MockAdmin
) -> None:
    CALLS.clear()
    weather = make_agent({"X-Mock-Tool": "get_weather"})
    result = await Runner.run(weather, "Weather in Paris?", max_turns=4, run_config=RUN)
    assert isinstance(result.final_output, str) and result.final_output
    assert len(CALLS) == 1
    entries = admin.requests()
    assert len(entries) == 2
    assert roles(admin)[1][-2:] == ["assistant", "tool"]
    assert [e["finish_reason"] for e in entries] == ["tool_calls", "stop"]


async def test_agents_sdk_loop_driven_by_a_rule_without_conversation_conditions(
    make_agent: Make, admin: MockAdmin
) -> None:
    CALLS.clear()
    admin.add_rules([{"id": "call", "respond": {"tool": "get_weather"}}])
    result = await Runner.run(make_agent(), "Weather in Paris?", max_turns=4, run_config=RUN)
    assert isinstance(result.final_output, str) and result.final_output
    assert len(CALLS) == 1
    assert [e["rule_id"] for e in admin.requests()] == ["call", "call"]


async def test_agents_sdk_loop_with_rules_on_conversation_state(
    make_agent: Make, admin: MockAdmin
) -> None:
    CALLS.clear()
    admin.add_rules(
        [
            {
                "id": "ask",
                "match": {"turn": 0, "tools_offered": "get_weather"},
                "respond": {"tool": "get_weather", "tool_arguments": {"city": "Paris"}},
            },
            {
                "id": "answer",
                "match": {"last_is_tool_result": True, "tool_result_for": "get_weather"},
                "respond": {"text": "It is sunny in Paris."},
            },
        ]
    )
    result = await Runner.run(make_agent(), "Weather in Paris?", max_turns=4, run_config=RUN)
    assert result.final_output == "It is sunny in Paris."
    assert CALLS == ["Paris"]
    assert [e["rule_id"] for e in admin.requests()] == ["ask", "answer"]
    admin.assert_all_rules_used()


async def test_agents_sdk_tool_repeat_keeps_calling_until_max_turns(
    make_agent: Make, admin: MockAdmin
) -> None:
    # The loop default is overridable: a mock that always calls the tool again.
    weather = make_agent({"X-Mock-Tool": "get_weather", "X-Mock-Tool-Repeat": "true"})
    with pytest.raises(MaxTurnsExceeded):
        await Runner.run(weather, "Weather in Paris?", max_turns=3, run_config=RUN)
    assert len(admin.requests()) == 3


async def test_agents_sdk_header_when_fails_only_the_second_turn(
    make_agent: Make, admin: MockAdmin
) -> None:
    headers = {
        "X-Mock-Tool": "get_weather",
        "X-Mock-Fault": "status=503",
        "X-Mock-When": "last_is_tool_result=true",
    }
    admin.add_rules([{"id": "call", "match": {"turn": 0}, "respond": {"tool": "get_weather"}}])
    with pytest.raises(openai.InternalServerError):
        await Runner.run(make_agent(headers), "Weather?", max_turns=4, run_config=RUN)
    assert [e["outcome"] for e in admin.requests()] == ["completed", "fault:status"]


def test_langchain_bind_tools_round_trip_ends_with_text(mock_url: str, admin: MockAdmin) -> None:
    # Our own HTTP client, closed here: LangChain's default one outlives the test.
    with httpx.Client() as http:
        llm = ChatOpenAI(
            model="gpt-4o-mini",
            base_url=f"{mock_url}/v1",
            api_key="test",  # type: ignore[arg-type]
            max_retries=0,
            default_headers={"X-Mock-Tool": "lookup"},
            http_client=http,
        )
        bound = llm.bind_tools([lookup])
        messages: list[Any] = [HumanMessage("Weather in Paris?")]
        first = bound.invoke(messages)
        assert isinstance(first, AIMessage) and len(first.tool_calls) == 1
        call = first.tool_calls[0]
        assert call["name"] == "lookup"
        messages += [first, ToolMessage(lookup.invoke(call["args"]), tool_call_id=call["id"])]
        second = bound.invoke(messages)
    assert isinstance(second, AIMessage)
    assert not second.tool_calls and isinstance(second.content, str) and second.content
    last = admin.requests()[-1]["body"]["messages"][-1]
    assert last["role"] == "tool" and last["tool_call_id"] == call["id"]
