"""A client's JSON, decoded once for every way it comes in (WebSocket frames, HTTP bodies).

``json.loads`` accepts text the rest of the server cannot carry: a lone UTF-16 surrogate
(``"\\ud800"``, or its bytes in a body, which ``json.loads`` decodes with ``surrogatepass``)
cannot be encoded as UTF-8 for the upstream request; ``NaN``, ``Infinity`` and ``1e400`` are not
JSON for the provider either; deep nesting and integers past Python's digit limit raise
``RecursionError`` and ``ValueError``, which nothing expects. Each of these is refused here as
``invalid_message`` before a stream exists, so a client hears what is wrong with its input
instead of a retryable ``internal_error`` later. Pure: text in, a dict or a
:class:`~reference_server.errors.ProtocolError` out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from reference_server.errors import ProtocolError

__all__ = ["MAX_DEPTH", "MAX_ID", "load_object", "message_id"]

# Chat messages, tool schemas and metadata nest a few levels; a JSON Schema of ten nested
# objects is about 25. Far below the recursion limit that encoding the upstream body meets.
MAX_DEPTH = 64
# Ids are echoed in every message: keep them short enough that a hostile id cannot bloat frames.
MAX_ID = 200

_SURROGATE = re.compile("[\ud800-\udfff]")


def load_object(text: str | bytes, what: str = "frame") -> dict[str, Any]:
    """The JSON object in ``text`` (a ``what``: "frame", "body"), or :class:`ProtocolError`."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_json", f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(
            "invalid_message", f"{what} nests deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError:
        # int() past sys.get_int_max_str_digits(); its own message suggests a Python setting.
        raise ProtocolError(
            "invalid_message", f"{what} holds a number with too many digits"
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object")
    problem = _first_problem(data)
    if problem is not None:
        raise ProtocolError("invalid_message", f"{what} {problem}", msg_id=message_id(data))
    return data


def _first_problem(data: dict[str, Any]) -> str | None:
    # A loop, not recursion: the depth limit is what this checks. Scalars are checked where
    # they are found, only containers wait on the stack (a 64 KiB frame can hold 20k numbers).
    pending: list[tuple[list[Any] | dict[str, Any], int]] = [(data, 1)]
    while pending:
        container, depth = pending.pop()
        if depth > MAX_DEPTH:
            return f"nests deeper than {MAX_DEPTH} levels"
        if isinstance(container, dict):
            for key in container:
                if not key.isascii() and _SURROGATE.search(key):
                    return _LONE_SURROGATE
            items: Iterable[Any] = container.values()
        else:
            items = container
        for item in items:
            # json.loads makes exact types only: ``type() is`` is the cheap test that holds.
            kind = type(item)
            if kind is str:
                if not item.isascii() and _SURROGATE.search(item):
                    return _LONE_SURROGATE
            elif kind is dict or kind is list:
                pending.append((item, depth + 1))
            elif kind is float and not math.isfinite(item):
                return "holds NaN or an infinite number; send finite numbers"
    return None


_LONE_SURROGATE = (
    "holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair), which is not "
    "Unicode text; send valid UTF-8"
)


def message_id(data: dict[str, Any]) -> str | None:
    """The message's ``id`` when an error may echo it, so the error names the chat it refuses."""
    raw = data.get("id")
    if not isinstance(raw, str) or len(raw) > MAX_ID or _SURROGATE.search(raw):
        return None
    return raw
