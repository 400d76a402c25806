"""Server-sent events from the client's side, without I/O.

The decoder is the repository's one SSE decoder, :class:`~mockllm.sse.SSEParser` (WHATWG
rules: any split of the bytes, CRLF/CR/LF, BOM, comments, multi-line ``data``, ``id``,
``retry``), re-exported here with its :class:`SSEEvent` and :class:`SSEComment`. Comments come
out too, because heartbeats are comments and the scenarios count them.

:class:`SSERecorder` applies the reference server's stream events (``docs/protocol.md``:
``id:`` = token index) to a :class:`StreamRecord`: on a token's way, the client's last step.
"""

from __future__ import annotations

import json
from typing import Any

from mockllm.sse import SSEComment, SSEEvent, SSEParser
from scenarios.clients.errors import ClientProtocolError
from scenarios.clients.records import StreamRecord

__all__ = ["SSEComment", "SSEEvent", "SSEParser", "SSERecorder"]


def _as_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


class SSERecorder:
    """Applies the reference server's SSE stream to one :class:`StreamRecord`.

    The event's kind is its ``event:`` name, or the ``type`` field of its JSON data when the
    name is the default ``message``. Token index: the data's ``index``, else the ``id:``.
    ``data: [DONE]`` (OpenAI style) also ends the stream. Comments count as heartbeats.
    """

    def __init__(self, record: StreamRecord) -> None:
        self.record = record
        self.heartbeats = 0
        self.events: int = 0

    def handle(self, item: SSEEvent | SSEComment, t: float) -> None:
        record = self.record
        if isinstance(item, SSEComment):
            self.heartbeats += 1
            if not record.done:
                record.heartbeats.append(t)
            return
        self.events += 1
        if item.id is not None:
            record.last_event_id = item.id
        if item.data == "[DONE]":
            record.finish("completed", t)
            return
        try:
            data = json.loads(item.data)
        except ValueError:
            raise ClientProtocolError(f"SSE data is not JSON: {item.data[:80]!r}") from None
        if not isinstance(data, dict):
            raise ClientProtocolError(f"SSE data is not a JSON object: {item.data[:80]!r}")
        kind = item.event if item.event != "message" else str(data.get("type", "message"))
        match kind:
            case "token" | "tool_call":
                index = _as_int(data.get("index"))
                if index is None:
                    index = _as_int(item.id)
                if index is None:
                    raise ClientProtocolError(f"SSE {kind} without index: {item.data[:80]!r}")
                if kind == "token":
                    record.add(index, str(data.get("content", "")), t)
                else:
                    args = data.get("arguments", "")
                    record.add(
                        index, args if isinstance(args, str) else json.dumps(args), t, "tool_call"
                    )
                    record.tool_calls.append(data)
            case "start":
                if isinstance(data.get("stream_id"), str):
                    record.stream_id = data["stream_id"]
                if isinstance(data.get("resume_token"), str):
                    record.resume_token = data["resume_token"]
                record.starts += 1
                record.replays += int(data.get("replay") is True)
            case "end" | "done":
                fr = data.get("finish_reason")
                record.finish_reason = fr if isinstance(fr, str) else None
                usage = data.get("usage")
                record.usage = usage if isinstance(usage, dict) else None
                record.expected_tokens = _as_int(data.get("tokens"))
                record.finish("completed", t)
            case "cancelled":
                record.cancelled_index = _as_int(data.get("index"))
                record.finish("cancelled", t)
            case "error":
                code = data.get("code")
                record.error_code = code if isinstance(code, str) else "error"
                msg = data.get("message")
                record.error_message = msg if isinstance(msg, str) else None
                record.error_retryable = data.get("retryable") is True
                record.finish("error", t)
            case _:
                pass  # unknown kinds are ignored, as the protocol asks
