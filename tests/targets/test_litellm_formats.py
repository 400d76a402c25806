"""LiteLLM's own provider clients (the ``litellm`` SDK, not the proxy) against the mock's other
wire formats: Anthropic Messages, Ollama ``/api/chat`` and Gemini, each parsed by code we did not
write. One script runs in LiteLLM's cache venv (its pins would fight ours); it prints what each
``litellm.completion(..., stream=True)`` gave, and the test compares that with the mock's ledger.

Found on 1.108.7: every format streams the mock's answer whole, and an Anthropic tool loop
(``tool_use``, then a ``tool`` message that LiteLLM turns into a ``tool_result``) ends with text
under ``X-Mock-Tool`` on both turns (the mock's loop default).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scenarios.stack.procs import start_process
from tests.targets import litellm

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(litellm.INSTALL_TIMEOUT_S + 300),
]

SCRIPT = r"""
import json, os, sys
import litellm

base = sys.argv[1]
hello = [{"role": "user", "content": "Hello there"}]
clients = {
    "anthropic_messages": dict(
        model="anthropic/claude-sonnet-4-5", api_base=base, api_key="sk-ant-test", max_tokens=300
    ),
    "ollama_chat": dict(model="ollama_chat/llama3.2", api_base=base),
    "gemini": dict(model="gemini/gemini-2.5-flash", api_base=base + "/v1beta", api_key="g-test"),
}
out = {}
for name, kw in clients.items():
    chunks = litellm.completion(messages=hello, stream=True, **kw)
    out[name] = "".join(c.choices[0].delta.content or "" for c in chunks)

weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
loop = dict(clients["anthropic_messages"], tools=[weather],
            extra_headers={"X-Mock-Tool": "get_weather"})
first = litellm.completion(messages=hello, **loop).choices[0]
call = first.message.tool_calls[0]
second = litellm.completion(messages=[
    *hello,
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
], **loop).choices[0]
out["loop"] = {
    "first": [first.finish_reason, call.function.name, json.loads(call.function.arguments)],
    "second": [second.finish_reason, second.message.content, second.message.tool_calls],
}
print(json.dumps(out))
"""


@pytest.fixture
async def mock_url(tmp_path: Path) -> AsyncIterator[str]:
    argv = [sys.executable, "-m", "mockllm", "--host", "127.0.0.1", "--port", "0", "--any-model"]
    proc = await start_process("mockllm", argv, log_dir=tmp_path)
    try:
        assert proc.url is not None
        yield proc.url.rstrip("/")
    finally:
        await proc.stop()


async def run_script(mock_url: str) -> dict[str, Any]:
    exe = await asyncio.to_thread(litellm.ensure_installed)
    python = exe.parent / "python"
    env = {**os.environ, **litellm.proxy_env()}
    done = await asyncio.create_subprocess_exec(
        str(python), "-c", SCRIPT, mock_url,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await done.communicate()
    assert done.returncode == 0, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_litellm_clients_stream_the_mock_answer_in_each_format(mock_url: str) -> None:
    got = await run_script(mock_url)
    async with httpx.AsyncClient(base_url=mock_url, trust_env=False) as admin:
        entries = (await admin.get("/_mock/requests")).json()["requests"]
    by_format = {e["format"]: e for e in entries[:3]}
    assert list(by_format) == ["anthropic_messages", "ollama_chat", "gemini"], entries
    for name, entry in by_format.items():
        assert entry["outcome"] == "completed", entry
        assert got[name] == entry["text"] and got[name], name
    # The same conversation and seed: the same text whatever the format.
    assert len({got[name] for name in by_format}) == 1
    first, second = got["loop"]["first"], got["loop"]["second"]
    assert first[:2] == ["tool_calls", "get_weather"] and isinstance(first[2]["city"], str)
    assert second[0] == "stop" and second[1] and not second[2]
    loop_entries = entries[3:]
    assert [e["format"] for e in loop_entries] == ["anthropic_messages"] * 2
