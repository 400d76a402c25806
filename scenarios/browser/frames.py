"""What a page's WebSocket received, read into the stream record of the message it was on.

Pure: the driver hands each frame (with the time it reached the harness) to a reader; the
reader fills the :class:`~scenarios.clients.records.StreamRecord` the checks read, the same
way the Python clients' recorders do. One message is open at a time on a page, so every frame
between sending a message and its answer belongs to it; frames of every socket the page
opened count (the page reconnects by itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from scenarios.clients.errors import ClientProtocolError
from scenarios.clients.records import StreamRecord
from scenarios.clients.tutorial import TutorialRecorder, decode_tutorial
from scenarios.clients.v1 import V1End, V1Error, V1Ping, V1Start, V1Token, decode_v1

__all__ = ["TutorialPageReader", "V1PageReader"]

# Errors after which the v1 page goes on with the same answer (frontend/src/v1.jsx).
_CONTINUED = frozenset({"server_shutdown", "unknown_stream", "stream_expired"})


class TutorialPageReader:
    """The tutorial shape: tokens in arrival order, the end in-band (``[END]``) or ``end``."""

    def __init__(self, record: StreamRecord, t: float) -> None:
        self.record = record
        self._recorder = TutorialRecorder()
        self._recorder.begin(record, t)
        self.stray = 0  # frames after the end (the rest of someone else's answer, say)

    def feed(self, payload: str, t: float) -> None:
        try:
            event = decode_tutorial(payload)
        except ClientProtocolError as exc:
            self._protocol_error(str(exc), t)
            return
        if self.record.done:
            self.stray += 1
            return
        self._recorder.handle(event, t)

    def _protocol_error(self, message: str, t: float) -> None:
        if not self.record.done:
            self.record.error_code, self.record.error_message = "protocol_error", message
            self.record.finish("error", t)


@dataclass
class V1PageReader:
    """Protocol v1: the page's chat id (from the ``chat`` frame it sent) keys its frames.

    A ``start`` that is no replay while tokens already arrived is a new generation (the server
    lost the stream): ``new_generation`` then says how many arrivals and which last index the
    page had, as :attr:`StreamState.dedupe_from` wants it.
    """

    record: StreamRecord
    chat_id: str | None = None
    new_generation: tuple[int, int] | None = None
    errors_seen: list[tuple[str, bool | None]] = field(default_factory=list)

    def sent(self, payload: str) -> None:
        if self.chat_id is None and '"chat"' in payload:
            try:
                frame = json.loads(payload)
            except ValueError:
                return
            if isinstance(frame, dict) and frame.get("type") == "chat":
                self.chat_id = str(frame.get("id"))

    def feed(self, payload: str, t: float) -> None:
        record = self.record
        try:
            event = decode_v1(payload)
        except ClientProtocolError as exc:
            if not record.done:
                record.error_code, record.error_message = "protocol_error", str(exc)
                record.finish("error", t)
            return
        if isinstance(event, V1Ping):
            record.heartbeats.append(t)
            return
        mine = self.chat_id is not None and getattr(event, "id", None) == self.chat_id
        if isinstance(event, V1Error) and not mine:
            # A resume's error names only the stream.
            mine = event.stream_id is not None and event.stream_id == record.stream_id
        if not mine or record.done:
            return
        if isinstance(event, V1Start):
            record.starts += 1
            if event.replay:
                record.replays += 1
            elif record.arrivals and self.new_generation is None:
                last = max(a.index for a in record.arrivals)
                self.new_generation = (len(record.arrivals), last)
            record.stream_id = event.stream_id
            record.resume_token = event.resume_token
        elif isinstance(event, V1Token):
            record.add(event.index, event.content, t)
        elif isinstance(event, V1End):
            record.finish_reason = event.finish_reason
            record.usage = dict(event.usage) if event.usage is not None else None
            record.expected_tokens = event.tokens
            record.finish("completed", t)
        elif isinstance(event, V1Error):
            if event.code in _CONTINUED:
                # The page continues after it: on a new connection (resume or a new chat),
                # or with the chat again when the server no longer has the stream.
                self.errors_seen.append((event.code, event.retryable))
                return
            record.error_code, record.error_message = event.code, event.message
            record.error_retryable = event.retryable
            record.finish("error", t)
