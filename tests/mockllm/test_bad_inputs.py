"""Every bad input gets a 400/404 in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mockllm.childproc import start_child
from mockllm.client import MockAdmin
from tests.support import start_cli, wait_for

pytestmark = pytest.mark.integration

GOOD: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def assert_still_serving(url: str) -> None:
    response = httpx.post(f"{url}/v1/chat/completions", json=GOOD)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {}),
        (b"[1, 2]", {}),
        (b'{"messages": [{"role": "user", "content": "x"}]}', {}),
        (b'{"model": "gpt-4o-mini"}', {}),
        (b'{"model": "gpt-4o-mini", "messages": "hello"}', {}),
        (b'{"model": 42, "messages": [{"role": "user", "content": "x"}]}', {}),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "max_tokens": -3}', {}),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "max_tokens": "3"}', {}),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "n": 0}', {}),
        (b'{"model": "gpt-4o-mini", "messages": [{"role": "user"}], "stream": "yes"}', {}),
        (GOOD, {"X-Mock-Fault": "explode"}),
        (GOOD, {"X-Mock-Fault": "abort_after=soon"}),
        (GOOD, {"X-Mock-Tokens": "-1"}),
        (GOOD, {"X-Mock-Itl-Ms": "slow"}),
        (GOOD, {"X-Mock-Nonsense": "1"}),
    ],
)
def test_bad_requests_are_400(mock_url: str, content: Any, headers: dict[str, str]) -> None:
    url = f"{mock_url}/v1/chat/completions"
    if isinstance(content, bytes):
        response = httpx.post(url, content=content, headers=headers)
    else:
        response = httpx.post(url, json=content, headers=headers)
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert_still_serving(mock_url)


def test_negative_max_tokens_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=GOOD["messages"], max_tokens=-1
        )
    assert info.value.code == "integer_below_min_value"
    assert info.value.param == "max_tokens"


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI, mock_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9-ultra", messages=GOOD["messages"])
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9-ultra")
    assert_still_serving(mock_url)


def test_any_mock_prefixed_model_is_served(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="mock-anything", messages=GOOD["messages"])
    assert completion.model == "mock-anything"


def test_unknown_path_and_method(mock_url: str) -> None:
    assert_openai_error(httpx.post(f"{mock_url}/v1/embeddings", json={}), 404)
    assert_openai_error(httpx.get(f"{mock_url}/v1/chat/completions"), 405)
    assert_still_serving(mock_url)


def test_bad_rules_posted_to_the_admin_api(mock_url: str) -> None:
    for rule in (
        {"respond": {"fault": "explode"}},
        {"match": {"prompt": "("}, "respond": {}},
        {"respond": {"tokens": "many"}},
        "nonsense",
    ):
        response = httpx.post(f"{mock_url}/_mock/rules", json=rule)
        assert_openai_error(response, 400)
    assert_openai_error(httpx.post(f"{mock_url}/_mock/rules", content=b"{"), 400)
    assert_openai_error(httpx.delete(f"{mock_url}/_mock/rules/no-such-rule"), 404)
    assert_still_serving(mock_url)


def test_bad_rule_file_stops_the_cli_with_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "rules.yaml"
    bad.write_text("- respond: {fault: explode}\n")
    result = subprocess.run(
        [sys.executable, "-m", "mockllm", "--port", "0", "--rules", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "rules.yaml" in result.stderr and "explode" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "glacial"], "invalid choice"),
        (["--port", "99999"], "--port"),
        (["--seed", "abc"], "invalid int"),
        (["--rules", "/nonexistent/rules.yaml"], "Cannot read rules file"),
    ],
)
def test_bad_flags_are_clear_errors(args: list[str], message: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mockllm",
            *(["--port", "0"] if "--port" not in args else []),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_rules_file_and_sigterm(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("- match: {prompt: weather}\n  respond: {text: Sunny all day.}\n")
    mock = start_cli("mockllm", "--port", "0", "--rules", str(rules), "--profile", "fast")
    try:
        body = {**GOOD, "messages": [{"role": "user", "content": "the weather?"}]}
        response = httpx.post(f"{mock.url}/v1/chat/completions", json=body)
        assert response.json()["choices"][0]["message"]["content"] == "Sunny all day."
    finally:
        mock.stop()
    assert mock.proc.returncode == 0


def test_sigterm_with_a_stalled_stream_open_exits_quickly() -> None:
    import threading
    import time

    mock = start_cli("mockllm", "--port", "0")
    url = mock.url
    body = {**GOOD, "stream": True}
    headers = {"X-Mock-Fault": "stall_after=1;seconds=60"}

    def hold() -> None:
        try:
            with httpx.stream(
                "POST", f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30
            ) as response:
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    admin = MockAdmin(url)
    admin.wait(1, timeout=10)  # the stream is open and stalled on the server
    admin.close()
    start = time.monotonic()
    code = mock.stop()
    assert time.monotonic() - start < 8
    assert code == 0
    thread.join(timeout=10)


def test_streamharness_mock_subcommand() -> None:
    import shutil
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("streamharness")
    command = [str(exe)] if exe.exists() else [shutil.which("streamharness") or "streamharness"]
    mock = start_child([*command, "mock", "--port", "0", "--seed", "5"])
    try:
        assert mock.output[0].startswith("mockllm listening on http://127.0.0.1:")
        lines = wait_for(lambda: mock.output[:2] if len(mock.output) >= 2 else [], what="2 lines")
        assert lines[1].strip() == f"OPENAI_BASE_URL={mock.url}/v1"
        assert httpx.get(f"{mock.url}/_mock/health").json() == {"status": "ok"}
    finally:
        mock.stop()
    assert mock.proc.returncode == 0
