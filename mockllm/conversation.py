"""The state of a conversation as agent-loop rules and controls see it, and conditions on it (pure).

An agent loop sends the whole conversation again on every turn: the user's question, the
assistant's tool call, the tool's result, and so on. :func:`summarize` reduces a request's
messages (the internal, OpenAI-chat-shaped ones every format is parsed into) to what a rule
may ask about: how many assistant turns came before, whether the request ends with tool
results and for which calls, whether it holds any tool result, and the tools it offers.
:class:`Condition` is such a question (a rule's ``match`` fields, or ``X-Mock-When``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mockllm.errors import InvalidRequest, excerpt

__all__ = [
    "CONDITION_KEYS",
    "Condition",
    "Conversation",
    "ToolResult",
    "answered_tool",
    "parse_condition",
    "parse_when",
    "summarize",
]

# A tool result is a "tool" message, or a legacy "function" message (named, no call id).
_RESULT_ROLES: Final = frozenset({"tool", "function"})


@dataclass(frozen=True)
class ToolResult:
    """One tool result message: the call it answers and that call's function (``None`` when
    the conversation does not say)."""

    call_id: str | None
    name: str | None

    def answers(self, ref: str) -> bool:
        return ref == self.call_id or ref == self.name

    def __str__(self) -> str:
        call = f"call {excerpt(self.call_id, 40)}" if self.call_id else ""
        if self.name is None:
            return call or "an unnamed call"
        return f"{excerpt(self.name, 40)} ({call})" if call else excerpt(self.name, 40)


@dataclass(frozen=True)
class Conversation:
    """What a request's messages say about the loop they belong to."""

    # Assistant messages so far (a message with parallel tool calls is one turn): the first
    # request of a loop is turn 0, the one after the first tool call turn 1.
    turn: int = 0
    # The tool results the request ends with (several after parallel calls), in order.
    last_tool_results: tuple[ToolResult, ...] = ()
    has_tool_result: bool = False
    tools: frozenset[str] = frozenset()

    @property
    def last_is_tool_result(self) -> bool:
        return bool(self.last_tool_results)

    def has_result_for(self, ref: str) -> bool:
        """Whether the request ends with the result of this call id or function name."""
        return any(result.answers(ref) for result in self.last_tool_results)


_FIRST: Final = Conversation()


def summarize(messages: Iterable[Mapping[str, Any]], tools: Iterable[str] = ()) -> Conversation:
    """The :class:`Conversation` of a request's messages and offered tool names. One pass, no
    text read: it costs about a microsecond per few messages, whatever their length."""
    turn = 0
    names: dict[str, str] = {}  # call id -> function name, from the assistants' tool calls
    trailing: list[ToolResult] = []
    any_result = False
    for message in messages:
        role = message.get("role")
        if role in _RESULT_ROLES:
            any_result = True
            call_id = message.get("tool_call_id")
            call_id = call_id if isinstance(call_id, str) else None
            name = names.get(call_id) if call_id is not None else None
            if name is None and isinstance(message.get("name"), str):
                name = message["name"]
            trailing.append(ToolResult(call_id, name))
            continue
        trailing = []
        if role == "assistant":
            turn += 1
            for call in message.get("tool_calls") or ():
                if not isinstance(call, Mapping):
                    continue
                function = call.get("function")
                name = function.get("name") if isinstance(function, Mapping) else None
                if isinstance(call.get("id"), str) and isinstance(name, str):
                    names[call["id"]] = name
    names_offered = frozenset(tools)
    if not (turn or any_result or names_offered):
        return _FIRST  # a load test's request: no object to build
    return Conversation(turn, tuple(trailing), any_result, names_offered)


def answered_tool(tool: str, messages: Iterable[Mapping[str, Any]]) -> bool:
    """Whether the request ends with a result of ``tool`` (a function name or call id): the
    call it would ask for has just been made, so an agent loop wants its answer now."""
    return summarize(messages).has_result_for(tool)


# -- conditions --------------------------------------------------------------------------------

#: The conversation fields a rule's ``match`` (and ``X-Mock-When``) may hold.
CONDITION_KEYS: Final = (
    "turn",
    "last_is_tool_result",
    "tool_result_for",
    "has_tool_result",
    "tools_offered",
)


@dataclass(frozen=True)
class Condition:
    """Conditions on a :class:`Conversation`, all of which must hold (``None``: any)."""

    turn: frozenset[int] | None = None
    last_is_tool_result: bool | None = None
    # a call id or function name the request's last tool results answer
    tool_result_for: str | None = None
    has_tool_result: bool | None = None
    # names the request's tools must all include
    tools_offered: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        return self == _ANY

    def matches(self, conversation: Conversation) -> bool:
        return not self.mismatches(conversation)

    def mismatches(self, conversation: Conversation) -> list[str]:
        """Each condition this conversation fails, in words (for a near miss)."""
        c = conversation
        reasons = []
        if self.turn is not None and c.turn not in self.turn:
            reasons.append(f"turn {c.turn} {_not_in(self.turn)}")
        last = self.last_is_tool_result
        if last is not None and c.last_is_tool_result != last:
            if c.last_is_tool_result:
                reasons.append(f"the last message is a tool result, for {_results(c)}")
            else:
                reasons.append("the last message is not a tool result")
        if self.tool_result_for is not None and not c.has_result_for(self.tool_result_for):
            wanted = excerpt(self.tool_result_for, 40)
            if c.last_is_tool_result:
                reasons.append(f"the last tool result is for {_results(c)}, not {wanted}")
            else:
                reasons.append(f"no tool result for {wanted} at the end of the conversation")
        if self.has_tool_result is not None and c.has_tool_result != self.has_tool_result:
            has = "has a tool result" if c.has_tool_result else "has no tool result"
            reasons.append(f"the conversation {has}")
        if self.tools_offered is not None and not self.tools_offered <= c.tools:
            missing = ", ".join(excerpt(n, 40) for n in sorted(self.tools_offered - c.tools))
            offered = ", ".join(excerpt(n, 40) for n in sorted(c.tools)) or "none"
            reasons.append(f"tool(s) {missing} not offered (offered: {offered})")
        return reasons

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.turn is not None:
            out["turn"] = sorted(self.turn)
        if self.last_is_tool_result is not None:
            out["last_is_tool_result"] = self.last_is_tool_result
        if self.tool_result_for is not None:
            out["tool_result_for"] = self.tool_result_for
        if self.has_tool_result is not None:
            out["has_tool_result"] = self.has_tool_result
        if self.tools_offered is not None:
            out["tools_offered"] = sorted(self.tools_offered)
        return out


_ANY: Final = Condition()


def _not_in(values: frozenset[int]) -> str:
    ordered = sorted(values)
    return f"!= {ordered[0]}" if len(ordered) == 1 else f"not in {ordered}"


def _results(conversation: Conversation) -> str:
    return ", ".join(map(str, conversation.last_tool_results))


def _wrong(where: str, expected: str, value: Any, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(
        f"{where} must be {expected}, got {excerpt(value)}.",
        param=param or where,
        code="invalid_value",
    )


def _turns(value: Any, where: str) -> frozenset[int]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _wrong(where, "an integer >= 0 or a non-empty list of them", value)
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise _wrong(where, "an integer >= 0 or a list of them", value)
    return frozenset(values)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong(where, "true or false", value)
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _wrong(where, "a call id or function name (a non-empty string)", value)
    return value


def _names(value: Any, where: str) -> frozenset[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise _wrong(where, "a function name or a non-empty list of them", value)
    return frozenset(values)


def parse_condition(raw: Mapping[str, Any], prefix: str) -> Condition:
    """A :class:`Condition` from the conversation fields of ``raw`` (other keys are the
    caller's); raises InvalidRequest naming the field as ``prefix`` + its name
    (``"Rule 'r1': match."`` gives ``"Rule 'r1': match.turn must be..."``)."""

    def field(name: str) -> tuple[Any, str]:
        return raw.get(name), prefix + name

    turn, turn_at = field("turn")
    last, last_at = field("last_is_tool_result")
    result_for, result_at = field("tool_result_for")
    has, has_at = field("has_tool_result")
    offered, offered_at = field("tools_offered")
    return Condition(
        turn=None if turn is None else _turns(turn, turn_at),
        last_is_tool_result=None if last is None else _flag(last, last_at),
        tool_result_for=None if result_for is None else _name(result_for, result_at),
        has_tool_result=None if has is None else _flag(has, has_at),
        tools_offered=None if offered is None else _names(offered, offered_at),
    )


_LIST_KEYS: Final = frozenset({"turn", "tools_offered"})
_FLAG_KEYS: Final = frozenset({"last_is_tool_result", "has_tool_result"})


def parse_when(value: Any, where: str) -> Condition:
    """An ``X-Mock-When`` value: ``key=value`` pairs separated by ``;``, a list as values
    separated by ``,`` (``turn=0,2;tools_offered=search``), or (from ``metadata`` or a
    directive's caller) an object with the fields of a rule's ``match``."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(CONDITION_KEYS)
        if unknown:
            raise _unknown(where, sorted(map(str, unknown)))
        fields: dict[str, Any] = dict(value)
    else:
        fields = _when_fields(value, where)
    try:
        return parse_condition(fields, f"{where} condition ")
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param=where, code=exc.code) from None


def _when_fields(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, str):
        raise _wrong(where, "a string such as 'turn=0;last_is_tool_result=false'", value)
    fields: dict[str, Any] = {}
    for pair in value.split(";"):
        if not pair.strip():
            continue
        key, eq, text = (part.strip() for part in pair.partition("="))
        if not eq:
            raise _wrong(where, "key=value pairs separated by ';'", pair.strip())
        if key not in CONDITION_KEYS:
            raise _unknown(where, [key])
        fields[key] = _typed(key, text, f"{where} condition {key}", where)
    if not fields:
        raise _wrong(where, "at least one key=value condition", value)
    return fields


def _unknown(where: str, keys: list[str]) -> InvalidRequest:
    shown = ", ".join(excerpt(k, 40) for k in keys)
    return InvalidRequest(
        f"Unknown condition(s) {shown} in {where}; known: {', '.join(CONDITION_KEYS)}.",
        param=where,
        code="invalid_value",
    )


def _typed(key: str, text: str, where: str, param: str) -> Any:
    """A text value of :func:`parse_when` as the type a rule's ``match`` has."""
    if key in _FLAG_KEYS:
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise _wrong(where, "true or false", text, param)
        return lowered == "true"
    if key in _LIST_KEYS:
        items = [item.strip() for item in text.split(",")]
        if key == "turn":
            if not all(item.isdigit() and item.isascii() for item in items):
                raise _wrong(where, "an integer >= 0 or a list such as 0,2", text, param)
            return [int(item) for item in items]
        return items
    return text
