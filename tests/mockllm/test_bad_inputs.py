"""Every bad input gets a 400/404 in OpenAI's error shape, and the server keeps serving."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from mockllm.childproc import start_child
from mockllm.client import MockAdmin
from tests.support import start_cli, wait_for, wait_for_async

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
    assert_openai_error(httpx.post(f"{mock_url}/v1/audio/speech", json={}), 404)
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


LONE_SURROGATE = b'"\\ud800"'  # the JSON escape of half a UTF-16 pair: no character


def _with_surrogate(template: str) -> bytes:
    return template.encode().replace(b"@", LONE_SURROGATE)


@pytest.mark.parametrize(
    "content",
    [
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": @}]}',
        '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "user": @}',
        '{"model": @, "messages": [{"role": "user", "content": "hi"}]}',
    ],
)
def test_a_lone_surrogate_in_a_chat_request_is_a_400(mock_url: str, content: str) -> None:
    raw = _with_surrogate(content)
    for path in ("/v1/chat/completions", "/_mock/preview"):
        error = assert_openai_error(httpx.post(f"{mock_url}{path}", content=raw), 400)
        assert error["type"] == "invalid_request_error" and "surrogate" in error["message"]
    # Raw UTF-8 bytes of a surrogate are no better than the escape.
    raw_bytes = content.encode().replace(b"@", b'"\xed\xa0\x80"')
    assert_openai_error(httpx.post(f"{mock_url}/v1/chat/completions", content=raw_bytes), 400)
    # The ledger (which records the rejection) can still be listed and waited on.
    assert httpx.get(f"{mock_url}/_mock/requests").status_code == 200
    wait = httpx.post(f"{mock_url}/_mock/requests/wait", json={"count": 1, "timeout": 1})
    assert wait.status_code == 200
    assert_still_serving(mock_url)


def test_a_lone_surrogate_in_an_admin_body_changes_nothing(mock_url: str, admin: MockAdmin) -> None:
    before_rules, before_config = admin.rules(), admin.config()
    for method, path, body in (
        ("POST", "/_mock/rules", '{"respond": {"text": @}}'),
        ("POST", "/_mock/rules", '[{"id": "ok", "respond": {}}, {"id": @, "respond": {}}]'),
        ("POST", "/_mock/rules", '{"match": {"prompt": @}, "respond": {}}'),
        ("PATCH", "/_mock/config", '{"seed": 5, "models": [@]}'),
        ("POST", "/_mock/requests/wait", '{"count": 1, "model": @}'),
    ):
        response = httpx.request(method, f"{mock_url}{path}", content=_with_surrogate(body))
        error = assert_openai_error(response, 400)
        assert "surrogate" in error["message"], (path, body)
    assert admin.rules() == before_rules and admin.config() == before_config
    assert httpx.get(f"{mock_url}/_mock/rules").status_code == 200


def test_a_refused_config_patch_changes_nothing(mock_url: str, admin: MockAdmin) -> None:
    before = admin.config()
    response = httpx.patch(f"{mock_url}/_mock/config", json={"seed": 77, "profile": "warp"})
    assert assert_openai_error(response, 400)["param"] == "profile"
    assert admin.config() == before


def test_a_refused_batch_of_rules_adds_none(mock_url: str, admin: MockAdmin) -> None:
    admin.add_rule(id="kept", respond={"text": "x"})
    for batch in (
        [{"id": "new", "respond": {}}, {"id": "bad", "respond": {"fault": "explode"}}],
        [{"id": "new", "respond": {}}, {"id": "kept", "respond": {}}],  # an id clash
        [{"id": "new", "respond": {}}, {"id": "new", "respond": {}}],
    ):
        assert_openai_error(httpx.post(f"{mock_url}/_mock/rules", json={"rules": batch}), 400)
    assert [rule["id"] for rule in admin.rules()] == ["kept"]


@pytest.mark.parametrize("timeout", ["NaN", "Infinity", "1e400"])
def test_a_wait_timeout_that_is_not_a_number_is_a_400(mock_url: str, timeout: str) -> None:
    raw = ('{"count": 1, "timeout": ' + timeout + "}").encode()
    assert_openai_error(httpx.post(f"{mock_url}/_mock/requests/wait", content=raw), 400)


async def test_a_stream_keeps_flowing_while_a_pathological_rule_matches(
    mock_url: str, admin: MockAdmin
) -> None:
    # (a+)+$ against "aaa...b" backtracks for minutes in Python's re; the second pattern has
    # no backtracking but outgrows RE2's automaton, so a 1 MB prompt costs seconds of
    # matching: in a worker thread, not on the event loop that times every stream.
    admin.add_rules(
        [
            {"id": "backtracking", "match": {"prompt": "(a+)+$"}, "respond": {"text": "x"}},
            {"id": "large-nfa", "match": {"prompt": "[ab]*a[ab]{200}c"}, "respond": {}},
        ]
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    stream_headers = {"X-Mock-Tokens": "60", "X-Mock-Itl-Ms": "25"}
    # Random a/b text (made before the stream starts: this loop times it): a periodic one
    # keeps RE2's automaton small, and fast. This one takes it about 2 s.
    noise = "".join(random.Random(7).choices("ab", k=1_000_000))
    async with httpx.AsyncClient(base_url=mock_url, timeout=30) as http:

        async def stream_gaps() -> list[float]:
            loop = asyncio.get_running_loop()
            arrivals = []
            request = {**body, "stream": True}
            async with http.stream(
                "POST", "/v1/chat/completions", json=request, headers=stream_headers
            ) as response:
                async for _ in response.aiter_raw():
                    arrivals.append(loop.time())
            return [b - a for a, b in itertools.pairwise(arrivals)]

        async def evil(prompt: str) -> int:
            messages = [{"role": "user", "content": prompt}]
            response = await http.post("/v1/chat/completions", json={**body, "messages": messages})
            return response.status_code

        gaps_task = asyncio.ensure_future(stream_gaps())
        await wait_for_async(lambda: admin.requests(), what="the stream's ledger entry")
        statuses = await asyncio.gather(evil("a" * 40 + "b"), evil(noise), evil("a" * 30_000 + "b"))
        gaps = await gaps_task
    assert statuses == [200, 200, 200]
    # 25 ms apart as scheduled; a stalled loop would show one gap of a second or more.
    assert max(gaps) < 0.5, sorted(gaps)[-3:]


def test_a_rules_file_that_is_not_rules_is_not_printed(tmp_path: Path) -> None:
    import subprocess
    import sys

    secret = "root:$6$Zx9secretsalt$Q1w2e3r4t5y6u7i8o9p0secrethash:19000:0:99999:7:::"
    shadow = tmp_path / "shadow"
    shadow.write_text(f"{secret}\n{secret.replace('root', 'daemon')}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"- a: [1\n  b: {secret}\n")
    for path, where in ((shadow, "not a rules file"), (broken, "line 2")):
        result = subprocess.run(
            [sys.executable, "-m", "mockllm", "--port", "0", "--rules", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert str(path) in result.stderr and where in result.stderr
        assert "secret" not in result.stderr + result.stdout
        assert len(result.stderr.strip().splitlines()) == 1
