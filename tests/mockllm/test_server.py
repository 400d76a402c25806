"""The mock as a real process: a graceful stop (SIGTERM) ends every open request cleanly."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from mockllm.client import MockAdmin
from mockllm.formats.openai_chat import SHUTDOWN_EVENT
from mockllm.sse import DONE, SSEEvent, SSEParser
from tests.support import start_cli, wait_for

pytestmark = pytest.mark.integration

KEY = "sk-proj-never-printed-0123456789abcdef"
BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


def test_sigterm_ends_every_open_stream_with_an_error_event() -> None:
    mock = start_cli("mockllm", "--port", "0")
    url = mock.url
    results: dict[str, Any] = {}

    def stream(name: str, headers: dict[str, str]) -> None:
        raw = b""
        try:
            with httpx.stream(
                "POST",
                f"{url}/v1/chat/completions",
                json=BODY,
                headers={"Authorization": f"Bearer {KEY}", **headers},
                timeout=30,
            ) as response:
                # iter_raw raises RemoteProtocolError on a chunked body cut short.
                for chunk in response.iter_raw():
                    raw += chunk
            results[name] = raw
        except httpx.HTTPError as exc:
            results[name] = exc

    def post(name: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        try:
            results[name] = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            results[name] = exc

    threads = [
        # slow, stalled, and split into two writes with a long pause between them
        threading.Thread(target=stream, args=("slow", {"X-Mock-Itl-Ms": "50"})),
        threading.Thread(
            target=stream, args=("stalled", {"X-Mock-Fault": "stall_after=2;seconds=60"})
        ),
        threading.Thread(
            target=stream,
            args=("split", {"X-Mock-Itl-Ms": "50", "X-Mock-Fault": "split_chunk;pause_ms=30"}),
        ),
        # a non-streamed answer whose body is not due for a minute, and a ledger wait
        threading.Thread(
            target=post,
            args=(
                "unsent",
                "/v1/chat/completions",
                {**BODY, "stream": False},
                {"X-Mock-Ttft-Ms": "60000"},
            ),
        ),
        threading.Thread(
            target=post, args=("wait", "/_mock/requests/wait", {"count": 99, "timeout": 60}, {})
        ),
    ]
    for thread in threads:
        thread.start()
    admin = MockAdmin(url)
    try:
        # Every stream has written a token (so it is mid-body), and the wait is waiting.
        wait_for(
            lambda: admin.stats(),
            what="4 answers and 1 wait in flight, 3 streams under way",
            until=lambda s: (
                s["active_streams"] == 4
                and s["waiters"] == 1
                and sum(e["tokens_sent"] > 0 for e in admin.requests()) >= 3
            ),
        )
    finally:
        admin.close()
    start = time.monotonic()
    mock.proc.send_signal(signal.SIGTERM)
    code = mock.proc.wait(10)
    stopped_in = time.monotonic() - start
    for thread in threads:
        thread.join(10)
    mock.reader.join(5) if mock.reader else None

    assert code == 0 and stopped_in < 3, (code, stopped_in, mock.text)
    for name in ("slow", "stalled", "split"):
        raw = results[name]
        assert isinstance(raw, bytes), (name, raw)  # the chunked body ended cleanly
        assert raw.endswith(SHUTDOWN_EVENT) and DONE not in raw, (name, raw[-300:])
        events = [e for e in SSEParser().feed(raw) if isinstance(e, SSEEvent)]
        *chunks, last = [json.loads(e.data) for e in events]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks), name
        assert last["error"]["code"] == "server_shutdown"
        assert last["error"]["type"] == "server_error"
    for name in ("unsent", "wait"):
        response = results[name]
        assert isinstance(response, httpx.Response), (name, response)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "server_shutdown"
    output = mock.text
    assert "Traceback" not in output and "CancelledError" not in output, output
    assert [line for line in output.splitlines() if "shutting down" in line] == [
        "mockllm: shutting down: ended 5 request(s) in flight"
    ], output
    assert KEY not in output and KEY[-8:] not in output


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_signal_right_after_the_address_line_is_a_clean_stop(workers: int) -> None:
    # A launcher may stop the mock the moment it has read the address. That signal once
    # landed before the mock handled it: the process died of it, or (caught by the asyncio
    # loop as an error, or by a worker not yet set up) was lost and the mock served on.
    for _ in range(3):
        mock = start_cli("mockllm", "--port", "0", "--workers", str(workers))
        mock.proc.send_signal(signal.SIGTERM)
        try:
            code = mock.proc.wait(15)
        finally:
            mock.stop()
        assert code == 0, mock.text
