"""Incoming JSON, strictly: the one parser of every request body and rules file of the mock.

Python's ``json`` accepts documents that the mock cannot give back: a lone UTF-16 surrogate
(``"\\ud800"`` as an escape, or its raw UTF-8 bytes, which ``json.loads`` lets through) is a
``str`` that no UTF-8 encoder takes, so one such request made every later ledger listing fail;
``NaN``, ``Infinity`` (and ``1e400``, which becomes it) are not JSON and would be written
back as such; a document nested a
thousand deep overflows the stack of the parser (or later of the encoder). :func:`parse_json`
refuses all of them with :class:`~mockllm.errors.InvalidJSON` before anything is stored, and
:func:`check_value` applies the same checks to data decoded elsewhere (a YAML rules file).
Pure: bytes or text in, a value or an error out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from mockllm.errors import InvalidJSON

__all__ = ["MAX_DEPTH", "check_value", "parse_json"]

#: Deepest nesting of arrays and objects accepted (a tool's JSON schema needs far fewer).
MAX_DEPTH: Final = 100

# An escape that can start a surrogate (\ud800-\udfff): a body without one, and with fewer
# brackets than MAX_DEPTH, needs no walk at all (the common case, checked in C).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON value (use a number or null).", syntax=True)


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        # It would be written back as Infinity, which is not JSON either.
        raise InvalidJSON(f"The number {text[:40]} is too large for a double.", syntax=True)
    return number


# One decoder for every document (json.loads would build one per call, with these hooks).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_json(raw: bytes | str) -> Any:
    """Decode strict UTF-8 JSON; raises :class:`~mockllm.errors.InvalidJSON`.

    ``syntax`` on the error tells a malformed document from a well-formed one that holds a
    value the mock refuses (its ``param`` then names where: ``messages[0].content``).
    """
    if isinstance(raw, bytes):
        try:
            # Not json.loads(bytes): that decodes with "surrogatepass".
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidJSON(
                f"The body is not valid UTF-8 (byte {exc.start}).", syntax=True
            ) from None
    else:
        text = raw
    try:
        if text.startswith("\ufeff"):
            json.loads(text)  # refused as json.loads refuses it: "Unexpected UTF-8 BOM"
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidJSON(
            f"JSON nested deeper than {MAX_DEPTH} levels is not accepted.", syntax=True
        ) from None
    except ValueError as exc:
        # JSONDecodeError's own text names a position, never the document's content.
        raise InvalidJSON(f"Invalid JSON: {exc}.", syntax=True) from None
    if _SURROGATE_ESCAPE.search(text) or text.count("[") + text.count("{") > MAX_DEPTH:
        check_value(value)
    return value


# Where a value sits, as a linked list from the value up to the root (cheap to extend; spelt
# out only for an error message).
_Path = tuple["_Path", str | int] | None


def _where(path: _Path) -> str:
    steps: list[str | int] = []
    while path is not None:
        path, step = path
        steps.append(step)
    out = ""
    for step in reversed(steps):
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(the document)"


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_value(value: Any, *, max_values: int | None = None) -> None:
    """Raise :class:`~mockllm.errors.InvalidJSON` if a decoded value holds a string with a
    lone surrogate (key or value), nests deeper than :data:`MAX_DEPTH`, or (given
    ``max_values``) holds more values than that, a shared one counted each time it is met."""
    # Iterative: the point is to survive inputs that would overflow a recursive walk.
    stack: list[tuple[Any, int, _Path]] = [(value, 0, None)]
    seen = 0
    while stack:
        item, depth, path = stack.pop()
        seen += 1
        if max_values is not None and seen > max_values:
            raise InvalidJSON(f"The document holds more than {max_values} values.")
        if isinstance(item, str):
            if _lone_surrogate(item):
                raise _surrogate_error(path)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidJSON(
                    f"JSON nested deeper than {MAX_DEPTH} levels is not accepted.", syntax=True
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str) and _lone_surrogate(key):
                        raise _surrogate_error((path, "<key>"))
                    stack.append((child, depth + 1, (path, str(key))))
            else:
                stack.extend((child, depth + 1, (path, i)) for i, child in enumerate(item))


def _surrogate_error(path: _Path) -> InvalidJSON:
    where = _where(path)
    return InvalidJSON(
        f"Invalid string in '{where}': it holds a lone UTF-16 surrogate (an escape between "
        "\\ud800 and \\udfff without its pair), which is not a Unicode character. "
        "Send valid UTF-8 text.",
        param=where,
    )
