"""The mutants: one small, realistic bug each, in one promise of docs/protocol.md.

A mutant replaces one exact piece of text (``old``, found exactly once in ``file``, a path
inside ``reference_server/``) with ``new``. ``promise`` says what the server then gets wrong, in
the words of docs/protocol.md; the catalogue should fail on it with a reason that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MUTANTS", "Mutant"]


@dataclass(frozen=True)
class Mutant:
    id: str
    promise: str
    file: str
    old: str
    new: str


MUTANTS: tuple[Mutant, ...] = (
    # --- WebSocket v1: hello, chat, tokens, end
    Mutant(
        "hello_token_is_session_id",
        "hello's resume_token proves the session when a chat is resent on a new socket",
        "session.py",
        "resume_token=session.resume_token,",
        "resume_token=session.session_id,",
    ),
    Mutant(
        "hello_heartbeat_in_seconds",
        "hello's heartbeat_interval_ms is the heartbeat interval in milliseconds",
        "session.py",
        "heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),",
        "heartbeat_interval_ms=int(s.heartbeat_interval_s),",
    ),
    Mutant(
        "token_index_from_one",
        "token indexes start at 0 and are dense per stream",
        "transports/ws.py",
        "frame = token_frame(prefix, item.index, item.content)",
        "frame = token_frame(prefix, item.index + 1, item.content)",
    ),
    Mutant(
        "tool_call_own_index",
        "a tool_call's index shares the token index sequence",
        "session.py",
        "index=event.index,\n            call_index=event.call_index,",
        "index=event.call_index,\n            call_index=event.call_index,",
    ),
    Mutant(
        "end_tokens_off_by_one",
        "end carries tokens, the count of tokens of the stream",
        "session.py",
        "usage=outcome.usage,\n            tokens=len(record.buffer),",
        "usage=outcome.usage,\n            tokens=record.buffer.last_index,",
    ),
    Mutant(
        "usage_not_requested",
        "end (and the blocking answer) carries the provider's usage",
        "providers/openai_chat.py",
        'return {**chat, "stream": True, "stream_options": {"include_usage": True}}',
        'return {**chat, "stream": True}',
    ),
    Mutant(
        "finish_reason_always_stop",
        "end's finish_reason is the provider's, passed through (tool_calls, length)",
        "providers/openai_chat.py",
        'return UpstreamFinish(self.finish_reason or "stop", self.usage)',
        'return UpstreamFinish("stop", self.usage)',
    ),
    Mutant(
        "max_tokens_not_forwarded",
        'max_tokens reaches the provider: a capped answer ends with finish_reason "length"',
        "manager.py",
        '        "max_tokens": max_tokens,\n        "temperature": temperature,',
        '        "temperature": temperature,',
    ),
    Mutant(
        "whitespace_chunks_dropped",
        "token content is the provider's text as sent, whitespace-only chunks included",
        "providers/openai_chat.py",
        "if isinstance(content, str) and content:",
        "if isinstance(content, str) and content.strip():",
    ),
    Mutant(
        "done_text_ends_stream",
        "a stream ends at the provider's [DONE] sentinel, not at [DONE] inside the answer",
        "providers/openai_chat.py",
        'if data.startswith("[DONE]"):',
        'if "[DONE]" in data:',
    ),
    Mutant(
        "new_chat_cancels_others",
        "several chats run at once on one socket: a new chat never cancels another",
        "session.py",
        "return [Generate(chat.id, body, session.session_id, self.settings.resume_grace_s)]",
        "return [\n"
        "            *(Cancel(current.record) for current in following.values()),\n"
        "            Generate(chat.id, body, session.session_id, self.settings.resume_grace_s),\n"
        "        ]",
    ),
    Mutant(
        "session_keyed_by_client_id",
        "client_id is not a credential: two sockets with the same client_id are separate sessions",
        "manager.py",
        "session_id=secrets.token_urlsafe(12),",
        "session_id=client_id,",
    ),
    # --- cancel
    Mutant(
        "cancel_keeps_upstream",
        "cancel closes the upstream HTTP request at once",
        "manager.py",
        "        else:\n            self._stop_generation(record)\n        return True\n",
        "        else:\n            pass\n        return True\n",
    ),
    Mutant(
        "cancelled_index_off_by_one",
        "cancelled carries index = the last index sent",
        "session.py",
        "return Cancelled(id=chat_id, index=last_sent)",
        "return Cancelled(id=chat_id, index=last_sent + 1)",
    ),
    Mutant(
        "cancel_unknown_wrong_code",
        "a cancel of an unknown id gets error unknown_stream",
        "session.py",
        '"unknown_stream",\n                    f"no active stream',
        '"invalid_message",\n                    f"no active stream',
    ),
    # --- resend, resume, idempotency
    Mutant(
        "resend_ignores_session_token",
        "a chat resent on a new socket with the session's resume_token and the same id never "
        "starts a second generation",
        "session.py",
        "existing = self.store.find(owner.session_id, chat.id)",
        "existing = self.store.find(session.session_id, chat.id)",
    ),
    Mutant(
        "resend_ignores_after",
        "a resend continues after its after: tokens the client has seen are not sent again",
        "session.py",
        "return [Follow(existing, chat.id, chat.after)]",
        "return [Follow(existing, chat.id, -1)]",
    ),
    Mutant(
        "resume_after_off_by_one",
        "resume replays the tokens after after (the last index seen): every token exactly once",
        "session.py",
        "return [Follow(record, record.chat_id, resume.after)]",
        "return [Follow(record, record.chat_id, resume.after + 1)]",
    ),
    Mutant(
        "resume_token_not_checked",
        "a resume with a wrong resume token is refused with forbidden",
        "session.py",
        "if resume.resume_token not in allowed:",
        "if not resume.resume_token:",
    ),
    Mutant(
        "resume_session_token_refused",
        "resume accepts the session's resume_token (from hello) as well as the stream's",
        "session.py",
        "allowed = {record.resume_token} | ({owner.resume_token} if owner else set())",
        "allowed = {record.resume_token}",
    ),
    Mutant(
        "tombstones_not_kept",
        "a resume of a stream past its retention gets stream_expired (HTTP 410), not "
        "unknown_stream",
        "streams.py",
        "            del self._by_key[key]\n        self._tombstones[stream_id] = None\n",
        "            del self._by_key[key]\n",
    ),
    Mutant(
        "http_create_not_idempotent",
        "POST /v1/streams again with the same id and its resume_token answers 200 with the same "
        "stream, no second generation",
        "transports/http.py",
        "chat_id=chat.id or secrets.token_urlsafe(9),",
        "chat_id=secrets.token_urlsafe(9),",
    ),
    # --- heartbeat
    Mutant(
        "no_app_ping",
        "the server sends an app-level ping every heartbeat_interval_ms",
        "session.py",
        "        return [Send(encode(Ping(ts=self._beats)), droppable=True)]\n",
        "        return []  # uvicorn's WebSocket ping frames keep the connection alive\n",
    ),
    Mutant(
        "pong_without_ts",
        "a client ping is answered with a pong echoing its ts",
        "session.py",
        "return [Send(encode(Pong(ts=message.ts)))]",
        "return [Send(encode(Pong()))]",
    ),
    Mutant(
        "heartbeat_close_1000",
        "a client silent for the heartbeat timeout is closed with 1011",
        "session.py",
        'CloseNow(1011, "heartbeat timeout: no message from the client")',
        'CloseNow(1000, "heartbeat timeout: no message from the client")',
    ),
    Mutant(
        "pong_not_liveness",
        "answering every ping with pong is enough to stay connected",
        "session.py",
        "        self.last_heard = now\n        if not self.bucket.allow(now):\n",
        "        if not self.bucket.allow(now):\n",
    ),
    # --- bad input
    Mutant(
        "unknown_type_code",
        "an unknown message type gets error unknown_type",
        "protocol.py",
        '"unknown_type", f"unknown message type',
        '"invalid_message", f"unknown message type',
    ),
    Mutant(
        "bad_input_closes_socket",
        "bad input gets an error and the socket stays open",
        "session.py",
        "            return [self._error(exc.code, exc.message, msg_id=exc.msg_id)]\n",
        "            return [\n"
        "                self._error(exc.code, exc.message, msg_id=exc.msg_id),\n"
        '                CloseNow(1008, "bad input"),\n'
        "            ]\n",
    ),
    Mutant(
        "lax_types",
        'field types are strict: "5" is not an integer (invalid_message / 422)',
        "protocol.py",
        'model_config = ConfigDict(extra="ignore", strict=True, frozen=True)',
        'model_config = ConfigDict(extra="ignore", strict=False, frozen=True)',
    ),
    # --- limits
    Mutant(
        "ws_size_limit_not_passed",
        "a WebSocket message over max_message_bytes closes the socket with 1009",
        "cli.py",
        "        ws_max_size=settings.max_message_bytes,\n",
        "",
    ),
    Mutant(
        "http_body_limit_kib",
        "an HTTP body over max_message_bytes gets 413 message_too_big",
        "transports/http.py",
        "if len(raw) > manager.settings.max_message_bytes:",
        "if len(raw) > manager.settings.max_message_bytes * 1024:",
    ),
    Mutant(
        "rate_limit_burst_uncapped",
        "over messages_per_second (after a burst of message_burst) a message gets rate_limited",
        "limits.py",
        "self._tokens = min(self._burst, self._tokens + elapsed * self._rate)",
        "self._tokens = self._tokens + elapsed * self._rate",
    ),
    Mutant(
        "stream_limit_off_by_one",
        "at most max_streams live streams per connection; one more gets too_many_streams",
        "session.py",
        "if _live(following) >= self.settings.max_streams_per_connection:",
        "if _live(following) > self.settings.max_streams_per_connection:",
    ),
    Mutant(
        "origin_not_checked_on_ws",
        "a WebSocket from an Origin outside the allow-list is closed with 1008",
        "transports/ws.py",
        "    refusal = check_origin(\n"
        '        websocket.headers.get("origin"), settings.allowed_origins, '
        "settings.allow_missing_origin\n"
        "    ) or check_auth(\n",
        "    refusal = check_auth(\n",
    ),
    Mutant(
        "auth_token_presence_only",
        "a wrong bearer token is refused (WebSocket close 1008, HTTP 401)",
        "limits.py",
        "if not hmac.compare_digest(presented.encode(), expected.encode()):",
        "if not presented:",
    ),
    Mutant(
        "send_queue_unbounded",
        "the send queue of a socket is bounded (send_queue_max_messages)",
        "transports/ws.py",
        "asyncio.Queue(\n            self.settings.send_queue_max_messages\n        )",
        "asyncio.Queue()",
    ),
    Mutant(
        "slow_reader_frames_dropped",
        "a slow reader still gets every token: the producer waits on the full send queue",
        "transports/ws.py",
        "await self.queue.put(text)  # a slow reader: the producer waits here",
        "self.queue.put(text)  # a slow reader: the producer waits here",
    ),
    Mutant(
        "send_watchdog_never_armed",
        "a client that stops reading is closed with 1008 after send_timeout_s",
        "transports/ws.py",
        "            if self._watchdog is None:\n                self._arm_watchdog(",
        "            if self._watchdog is not None:\n                self._arm_watchdog(",
    ),
    # --- shutdown
    Mutant(
        "shutdown_close_1000",
        "on shutdown the sockets are closed with 1001",
        "transports/ws.py",
        'self.queue.put_nowait(_CloseRequest(1001, "server shutting down"))',
        'self.queue.put_nowait(_CloseRequest(1000, "server shutting down"))',
    ),
    Mutant(
        "shutdown_streams_not_failed",
        "on shutdown every live stream gets error server_shutdown (retryable) before the close",
        "manager.py",
        '            if record.fail(now, "server_shutdown", '
        '"server is shutting down; retry", True):\n'
        "                self._stop_generation(record)\n",
        "            self._stop_generation(record)\n",
    ),
    # --- upstream
    Mutant(
        "retry_after_first_token",
        "after the first token an upstream failure ends the stream with a retryable error, "
        "never a retry",
        "upstream.py",
        "if delivered or not exc.retryable:",
        "if not exc.retryable:",
    ),
    Mutant(
        "retry_after_header_misread",
        "before the first token the server retries honouring Retry-After",
        "upstream.py",
        '("retry-after", 1.0)',
        '("retry_after", 1.0)',
    ),
    Mutant(
        "retries_one_too_many",
        "retries before the first token are bounded by upstream_max_retries",
        "upstream.py",
        "if attempt >= self.max_retries:",
        "if attempt > self.max_retries:",
    ),
    Mutant(
        "status_429_not_retried",
        "a 429 from the provider before the first token is retried",
        "errors.py",
        "retryable = status in (408, 409, 429) or status >= 500",
        "retryable = status >= 500",
    ),
    Mutant(
        "upstream_failure_not_retryable",
        "upstream_error / upstream_timeout after the first token is retryable: true",
        "manager.py",
        "record.fail(self.clock(), exc.code, exc.message, exc.retryable)",
        "record.fail(self.clock(), exc.code, exc.message, False)",
    ),
    Mutant(
        "timeout_reported_as_error",
        "a stalled provider ends the stream with upstream_timeout",
        "errors.py",
        'code = "upstream_timeout"',
        'code = "upstream_error"',
    ),
    Mutant(
        "truncated_stream_is_an_end",
        "a stream the provider cut short (no finish_reason, no [DONE]) ends with "
        "upstream_error, not end",
        "providers/openai_chat.py",
        "        if not self.done and self.finish_reason is None:\n"
        '            raise UpstreamError("upstream stream ended without a finish_reason or '
        '[DONE]")\n',
        "",
    ),
    # --- abandoned streams, disconnects, leaks
    Mutant(
        "abandoned_idle_clock_never_started",
        "an abandoned stream (client gone, never resumed) stops its upstream request when the "
        "resume grace ends",
        "manager.py",
        "        record.idle_since = self.clock()\n"
        "        if not record.terminal and record.idle_limit_s <= 0:",
        "        if not record.terminal and record.idle_limit_s <= 0:",
    ),
    Mutant(
        "blocking_disconnect_keeps_generating",
        "a blocking call whose client leaves stops its upstream request",
        "transports/http.py",
        "idle_limit_s=0,  # nobody can resume a blocking call",
        "idle_limit_s=manager.settings.http_stream_idle_s,  # nobody can resume a blocking call",
    ),
    Mutant(
        "leak_forwarders_on_disconnect",
        "after a disconnect nothing leaks (tasks, readers, upstream connections)",
        "transports/ws.py",
        "tasks = self._helpers + [sub.task for sub in self.subscriptions.values()]",
        "tasks = self._helpers",
    ),
    # --- SSE
    Mutant(
        "sse_no_event_names",
        "every SSE event has an event: name (start, token, end, error, cancelled)",
        "transports/http.py",
        "event=message.type,",
        "event=None,",
    ),
    Mutant(
        "sse_id_one_based",
        "an SSE token event's id: is its index",
        "transports/http.py",
        "yield _sse(token, item.index)",
        "yield _sse(token, item.index + 1)",
    ),
    Mutant(
        "sse_last_event_id_header_ignored",
        "an SSE reconnect with Last-Event-ID: N replays only the events after N",
        "transports/http.py",
        'raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")',
        'raw = request.query_params.get("last_event_id")',
    ),
    Mutant(
        "sse_start_replay_false",
        "an SSE reconnect with Last-Event-ID starts with start replay: true",
        "transports/http.py",
        "replay=after >= 0,",
        "replay=False,",
    ),
    Mutant(
        "sse_no_204_after_end",
        "an SSE reconnect after the terminal event answers 204",
        "transports/http.py",
        "if record.terminal and after >= len(record.buffer):",
        "if record.terminal and after > len(record.buffer):",
    ),
    Mutant(
        "sse_terminal_id_last_index",
        "the SSE terminal event's id: is the token count",
        "transports/http.py",
        "yield _sse(end, len(record.buffer))",
        "yield _sse(end, last_sent)",
    ),
    Mutant(
        "sse_no_heartbeat",
        "SSE sends : ping comments every heartbeat_interval_s",
        "transports/http.py",
        "record.follow(after, heartbeat_s=heartbeat)",
        "record.follow(after)",
    ),
    Mutant(
        "sse_buffering_header_missing",
        "SSE responses carry X-Accel-Buffering: no",
        "transports/http.py",
        'headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},',
        'headers={"Cache-Control": "no-cache"},',
    ),
    Mutant(
        "sse_missing_token_accepted",
        "an SSE / polling / cancel request without the stream's resume token gets 403 forbidden",
        "transports/http.py",
        "if not _token_matches(token, record.resume_token):",
        "if token and not _token_matches(token, record.resume_token):",
    ),
    Mutant(
        "events_url_without_token",
        "events_url already carries the resume token (an EventSource reconnects by itself)",
        "transports/http.py",
        '"events_url": f"{base}/events?resume_token={record.resume_token}",',
        '"events_url": f"{base}/events",',
    ),
    # --- polling, blocking, HTTP cancel
    Mutant(
        "poll_next_after_skips",
        "polling: next_after is the last index returned, tokens?after=N gives the tokens after N",
        "transports/http.py",
        '"next_after": events[-1].index if events else after,',
        '"next_after": events[-1].index + 1 if events else after,',
    ),
    Mutant(
        "blocking_failure_status_500",
        "a failed blocking call answers 502 upstream_error",
        "transports/http.py",
        '"upstream_error": 502,',
        '"upstream_error": 500,',
    ),
    Mutant(
        "http_cancel_ended_200",
        "DELETE /v1/streams/{id} of a stream that already ended answers 409",
        "transports/http.py",
        "    if not _manager(request).cancel(found):\n"
        "        state = found.state.value\n"
        '        return _error(409, "unknown_stream", f"stream is not active (already {state})")\n',
        "    _manager(request).cancel(found)\n",
    ),
    # --- tutorial shape
    Mutant(
        "tutorial_no_end_frame",
        'tutorial shape: every answer ends with {"type": "end"}',
        "transports/ws.py",
        "                            if item.state is StreamState.ENDED:\n"
        "                                await self._enqueue(tutorial_end())\n"
        "                            else:\n",
        "                            if item.state is not StreamState.ENDED:\n",
    ),
)
