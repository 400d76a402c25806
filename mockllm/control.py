"""Which behaviour a request gets: the control keys, their sources and their priority.

Sources, highest priority first: the in-prompt directive (opt-in), ``X-Mock-*`` request
headers, the first matching rule, the model name's profile (``mock-fast``), the server's
defaults. Every source speaks the same keys (:data:`KEYS`); a header is the key in
``X-Mock-Title-Case`` form (``ttft_ms`` -> ``X-Mock-Ttft-Ms``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mockllm.conversation import Condition, Conversation, parse_when
from mockllm.errors import InvalidRequest, excerpt
from mockllm.faults import NO_FAULTS, Faults, parse_faults
from mockllm.profiles import PROFILES, profile_for_model
from mockllm.schedule import Timing

__all__ = [
    "HEADER_PREFIX",
    "KEYS",
    "Control",
    "coerce",
    "extract_directives",
    "header_overrides",
    "metadata_overrides",
    "resolve",
]

HEADER_PREFIX = "x-mock-"
MODES = ("lorem", "echo")

# key -> (kind, minimum, maximum)
KEYS: dict[str, tuple[str, float, float]] = {
    "seed": ("int", -(2**63), 2**63 - 1),
    "profile": ("profile", 0, 0),
    "ttft_ms": ("float", 0, 600_000),
    "itl_ms": ("float", 0, 600_000),
    "jitter_ms": ("float", 0, 600_000),
    "tokens_per_chunk": ("int", 1, 10_000),
    "tokens": ("int", 0, 1_000_000),
    "text": ("str", 0, 0),
    "mode": ("mode", 0, 0),
    "fault": ("fault", 0, 0),
    "tool": ("str", 0, 0),
    "tool_arguments": ("json", 0, 0),
    "tool_repeat": ("bool", 0, 0),
    "when": ("when", 0, 0),
}
# An agent loop sends its tool's result back to the model: by default a call the controls ask
# for is not made again when the request ends with that tool's result (``tool_repeat`` makes
# it). ``when`` makes the other keys of its source (headers and metadata, or the directive)
# apply only to requests whose conversation matches (conversation.py).


@dataclass(frozen=True)
class Control:
    profile: str
    timing: Timing
    seed: int | None = None
    tokens: int | None = None
    text: str | None = None
    mode: str = "lorem"
    faults: Faults = NO_FAULTS
    tool: str | None = None
    tool_arguments: str | None = None
    tool_repeat: bool = False
    rule_id: str | None = None


def coerce(key: str, value: Any, where: str) -> Any:
    """Check and convert one control value; ``where`` names the source in error messages."""
    if key not in KEYS:
        raise InvalidRequest(
            f"Unknown mock control {where!r}. Known keys: {', '.join(KEYS)}.",
            param=where,
            code="unknown_control",
        )
    kind, low, high = KEYS[key]
    if kind in ("int", "float"):
        try:
            if isinstance(value, bool):
                raise ValueError
            if kind == "int":
                number: float = value if isinstance(value, int) else int(str(value).strip())
            else:
                number = float(value) if isinstance(value, (int, float)) else float(str(value))
        except ValueError:
            expected = "an integer" if kind == "int" else "a number"
            raise InvalidRequest(
                f"Invalid value for {where}: expected {expected}, got {excerpt(value)}.",
                param=where,
                code="invalid_value",
            ) from None
        if not low <= number <= high or number != number:
            raise InvalidRequest(
                f"Invalid value for {where}: expected {low:g} <= value <= {high:g}, "
                f"got {excerpt(value)}.",
                param=where,
                code="invalid_value",
            )
        return number
    if kind == "profile":
        if not isinstance(value, str) or value not in PROFILES:
            raise InvalidRequest(
                f"Unknown profile {excerpt(value)} in {where}. "
                f"Known profiles: {', '.join(PROFILES)}.",
                param=where,
                code="invalid_value",
            )
        return value
    if kind == "mode":
        if not isinstance(value, str) or value not in MODES:
            raise InvalidRequest(
                f"Unknown mode {excerpt(value)} in {where}. Known modes: {', '.join(MODES)}.",
                param=where,
                code="invalid_value",
            )
        return value
    if kind == "fault":
        if not isinstance(value, str):
            raise InvalidRequest(f"{where} must be a string.", param=where, code="invalid_type")
        parse_faults(value)  # validate now so a bad fault is reported where it was given
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise InvalidRequest(
            f"Invalid value for {where}: expected true or false, got {excerpt(value)}.",
            param=where,
            code="invalid_value",
        )
    if kind == "when":
        return parse_when(value, where)
    if kind == "json":
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if isinstance(value, str):
            try:
                json.loads(value)
            except ValueError:
                raise InvalidRequest(
                    f"{where} must be a JSON object or a JSON string.", param=where
                ) from None
            return value
        raise InvalidRequest(f"{where} must be a JSON object.", param=where, code="invalid_type")
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string.", param=where, code="invalid_type")
    return value


def header_name(key: str) -> str:
    return "X-Mock-" + "-".join(part.capitalize() for part in key.split("_"))


_HEADER_NAMES = {key: header_name(key) for key in KEYS}


def header_overrides(headers: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Control values from ``X-Mock-*`` headers (names case-insensitive)."""
    out: dict[str, Any] = {}
    for name, value in headers:
        lower = name.lower()
        if not lower.startswith(HEADER_PREFIX):
            continue
        key = lower[len(HEADER_PREFIX) :].replace("-", "_")
        if key not in KEYS:
            raise InvalidRequest(
                f"Unknown header {name!r}. Known X-Mock headers: "
                + ", ".join(header_name(k) for k in KEYS)
                + ".",
                param=name,
                code="unknown_control",
            )
        out[key] = coerce(key, value, _HEADER_NAMES[key])
    return out


METADATA_PREFIX = "mock_"


def metadata_overrides(metadata: Any) -> dict[str, Any]:
    """Control values from the request body's ``metadata`` (keys ``mock_<key>``)."""
    if not isinstance(metadata, dict):
        return {}
    out: dict[str, Any] = {}
    for name, value in metadata.items():
        if isinstance(name, str) and name.startswith(METADATA_PREFIX):
            key = name[len(METADATA_PREFIX) :]
            out[key] = coerce(key, value, f"metadata.{name}")
    return out


# [[mock key=value key="value with spaces" ...]] anywhere in a message's text: this opening,
# then a body without "]", then "]]" (found by _directives, not by one regex: see there).
_DIRECTIVE_OPEN = re.compile(r"\s?\[\[mock:?\s*")


def _directives(text: str) -> list[tuple[int, int, str]]:
    r"""``(start, end, body)`` of each directive, left to right, as the regex
    ``\s?\[\[mock:?\s*([^\]]*)\]\]`` would find them, in time linear in ``text``.

    That regex scans from every opening to the next ``]``: a prompt of many openings and no
    ``]`` cost time quadratic in its length (44 s of the event loop for 112 KB). Here the next
    ``]`` is searched once and reused by every opening before it.
    """
    found: list[tuple[int, int, str]] = []
    pos = 0
    close = -1
    while (opening := _DIRECTIVE_OPEN.search(text, pos)) is not None:
        if close < opening.end():
            close = text.find("]", opening.end())
            if close == -1:
                break  # no "]" after this point: no directive either
        if text.startswith("]]", close):
            found.append((opening.start(), close + 2, text[opening.end() : close]))
            pos = close + 2
        else:
            pos = opening.start() + 1
    return found


def _parse_directive(body: str) -> dict[str, Any]:
    try:
        words = shlex.split(body)
    except ValueError as exc:
        raise InvalidRequest(
            f"Malformed [[mock ...]] directive: {exc}.", param="messages"
        ) from None
    out: dict[str, Any] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise InvalidRequest(
                f"Malformed [[mock ...]] directive item {word!r}: expected key=value.",
                param="messages",
            )
        key = key.strip().lower().replace("-", "_")
        out[key] = coerce(key, value, f"directive {key}")
    return out


def _strip_text(text: str, found: dict[str, Any]) -> str:
    pieces: list[str] = []
    kept = 0
    for start, end, body in _directives(text):
        found.update(_parse_directive(body))
        pieces.append(text[kept:start])
        kept = end
    pieces.append(text[kept:])
    stripped = "".join(pieces)
    # A directive at the start leaves no leading space behind (the pattern eats one before it).
    return stripped.lstrip(" ") if text.lstrip().startswith("[[mock") else stripped


def extract_directives(
    messages: tuple[dict[str, Any], ...],
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """Remove ``[[mock ...]]`` directives from every message; later directives win."""
    found: dict[str, Any] = {}
    cleaned: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str) and "[[mock" in content:
            message = {**message, "content": _strip_text(content, found)}
        elif isinstance(content, list) and any(
            isinstance(p, dict) and "[[mock" in str(p.get("text", "")) for p in content
        ):
            parts = [
                {**p, "text": _strip_text(p["text"], found)}
                if isinstance(p, dict) and isinstance(p.get("text"), str)
                else p
                for p in content
            ]
            message = {**message, "content": parts}
        cleaned.append(message)
    return tuple(cleaned), found


def resolve(
    *,
    model: str,
    default_profile: str,
    rule: Mapping[str, Any] | None = None,
    rule_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    directive: Mapping[str, Any] | None = None,
    conversation: Conversation | None = None,
) -> Control:
    """Merge the sources (lowest priority first) into one :class:`Control`.

    A profile supplies the base timing; explicit timing keys from any source override it.
    A source with a ``when`` the ``conversation`` (the request's, ``conversation.summarize``)
    does not match is left out whole.
    """
    headers = _applies(headers, conversation)
    directive = _applies(directive, conversation)
    # Without a rule the result depends on these values only, and a load test sends the same
    # ones over and over: the Control (frozen, its faults parsed) is kept and shared.
    key = None
    if not rule:
        key = (
            model,
            default_profile,
            tuple(headers.items()) if headers else (),
            tuple(directive.items()) if directive else (),
        )
        try:
            known = _resolved.get(key)
        except TypeError:  # an unhashable value: resolved every time
            key = known = None
        if known is not None:
            return known
    control = _resolve(model, default_profile, rule, rule_id, headers, directive)
    if key is not None:
        if len(_resolved) >= _RESOLVED_MAX:
            del _resolved[next(iter(_resolved))]
        _resolved[key] = control
    return control


def _applies(
    layer: Mapping[str, Any] | None, conversation: Conversation | None
) -> Mapping[str, Any] | None:
    """A source's keys without its ``when``, or None when that condition does not hold."""
    if not layer or "when" not in layer:
        return layer
    condition: Condition = layer["when"]
    if not condition.matches(conversation or Conversation()):
        return None
    return {key: value for key, value in layer.items() if key != "when"}


_RESOLVED_MAX = 1024
_resolved: dict[tuple[Any, ...], Control] = {}


def _resolve(
    model: str,
    default_profile: str,
    rule: Mapping[str, Any] | None,
    rule_id: str | None,
    headers: Mapping[str, Any] | None,
    directive: Mapping[str, Any] | None,
) -> Control:
    merged: dict[str, Any] = {"profile": default_profile}
    model_profile = profile_for_model(model)
    if model_profile is not None:
        merged["profile"] = model_profile
    for layer in (rule, headers, directive):
        if layer:
            merged.update(layer)
    base = PROFILES[merged["profile"]].timing
    timing = Timing(
        ttft_ms=float(merged.get("ttft_ms", base.ttft_ms)),
        itl_ms=float(merged.get("itl_ms", base.itl_ms)),
        jitter_ms=float(merged.get("jitter_ms", base.jitter_ms)),
        tokens_per_chunk=int(merged.get("tokens_per_chunk", base.tokens_per_chunk)),
    )
    fault = merged.get("fault")
    return Control(
        profile=merged["profile"],
        timing=timing,
        seed=merged.get("seed"),
        tokens=merged.get("tokens"),
        text=merged.get("text"),
        mode=merged.get("mode", "lorem"),
        faults=parse_faults(fault) if fault else NO_FAULTS,
        tool=merged.get("tool"),
        tool_arguments=merged.get("tool_arguments"),
        tool_repeat=merged.get("tool_repeat", False),
        rule_id=rule_id if rule else None,
    )
