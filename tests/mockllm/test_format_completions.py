"""Legacy Completions (``POST /v1/completions``) and Embeddings (``POST /v1/embeddings``): exact
bytes of the encoders, and the ``openai`` SDK against the live mock."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import httpx
import openai
import pytest

from mockllm.client import MockAdmin
from mockllm.control import resolve
from mockllm.formats.completions import Completions
from mockllm.formats.embeddings import Embeddings, embedding
from mockllm.generation import Action, Plan, build_plan

COMPLETIONS = Completions()
EMBEDDINGS = Embeddings()
MODEL = "gpt-4o-mini"
EMBEDDER = "mock-embedding"


def plan(fmt: Any, body: dict[str, Any], **control: Any) -> Plan:
    request = fmt.parse(body, "")
    ctl = resolve(model=request.model, default_profile="instant", headers=control)
    return build_plan(request, ctl, messages=request.messages, server_seed=0, sequence=1)


def test_exact_bytes_of_a_completion_stream() -> None:
    body = {
        "model": MODEL,
        "prompt": "Hi",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    p = plan(COMPLETIONS, body, text="Hi there.")
    cid = "cmpl-" + p.completion_id.removeprefix("chatcmpl-")
    head = (
        f'data: {{"id":"{cid}","object":"text_completion","created":7,"model":"gpt-4o-mini",'
        '"choices":'
    )
    chunk = head + '[{"text":%s,"index":0,"logprobs":null,"finish_reason":%s}]}\n\n'
    prompt = p.prompt_tokens
    usage = (
        f'"usage":{{"prompt_tokens":{prompt},"completion_tokens":3,"total_tokens":{prompt + 3}}}'
    )
    expected = (
        chunk % ('"Hi"', "null") + chunk % ('" there"', "null") + chunk % ('"."', "null")
        + chunk % ('""', '"stop"')
        + head + "[]," + usage + "}\n\n"
        + "data: [DONE]\n\n"
    )  # fmt: skip
    events = list(COMPLETIONS.stream(p, body, 7).events())
    assert b"".join(e[1] for e in events) == expected.encode()
    assert [e[2] for e in events] == [1, 1, 1, 0]


def test_completion_prompt_must_be_one_string() -> None:
    assert COMPLETIONS.parse({"model": MODEL, "prompt": ["Hi"]}, "").messages == (
        {"role": "user", "content": "Hi"},
    )
    with pytest.raises(Exception, match="one prompt string"):
        COMPLETIONS.parse({"model": MODEL, "prompt": ["a", "b"]}, "")


def test_embedding_is_a_seeded_unit_float32_vector() -> None:
    vector = embedding(5, "hello", 64)
    assert vector == embedding(5, "hello", 64)
    assert vector != embedding(6, "hello", 64) and vector != embedding(5, "hullo", 64)
    assert math.isclose(math.fsum(v * v for v in vector), 1.0, rel_tol=1e-5)
    assert vector == list(struct.unpack("<64f", struct.pack("<64f", *vector)))


def test_embeddings_body_base64_is_the_float_vector_packed() -> None:
    floats = {"model": EMBEDDER, "input": ["a", "b"], "dimensions": 4, "encoding_format": "float"}
    packed = {**floats, "encoding_format": "base64"}
    as_floats = json.loads(EMBEDDINGS.body(plan(EMBEDDINGS, floats), floats, 0, 3).event[1])
    as_base64 = json.loads(EMBEDDINGS.body(plan(EMBEDDINGS, packed), packed, 0, 3).event[1])
    for f, b in zip(as_floats["data"], as_base64["data"], strict=True):
        assert list(struct.unpack("<4f", base64.b64decode(b["embedding"]))) == f["embedding"]
    assert [d["index"] for d in as_floats["data"]] == [0, 1]
    assert as_floats["data"][0]["embedding"] != as_floats["data"][1]["embedding"]


def test_embeddings_abort_fault_is_an_abort_action() -> None:
    body = {"model": EMBEDDER, "input": "a"}
    out = EMBEDDINGS.body(plan(EMBEDDINGS, body, fault="abort_after=0"), body, 0, 0)
    assert out.event[3] is Action.ABORT and out.outcome == "fault:abort_after"


# -- the SDK against the live mock -------------------------------------------------------------


def test_completion_streamed_and_not_give_the_chat_text(
    client: openai.OpenAI, admin: MockAdmin
) -> None:
    whole = client.completions.create(model=MODEL, prompt="Hi")
    chunks = list(
        client.completions.create(
            model=MODEL, prompt="Hi", stream=True, stream_options={"include_usage": True}
        )
    )
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert streamed == whole.choices[0].text == chat.choices[0].message.content != ""
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 32
    assert whole.choices[0].finish_reason == "stop"
    formats = [e["format"] for e in admin.requests()]
    assert formats == ["openai_completions", "openai_completions", "openai_chat"]


def test_completion_max_tokens_gives_length(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="Hi", max_tokens=3)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 3


def test_completion_faults_raise_the_sdk_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.completions.create(
            model=MODEL, prompt="Hi", extra_headers={"X-Mock-Fault": "status=429"}
        )
    with pytest.raises(openai.APIError, match="error while processing"):
        list(
            client.completions.create(
                model=MODEL,
                prompt="Hi",
                stream=True,
                extra_headers={"X-Mock-Fault": "error_after=2"},
            )
        )
    with pytest.raises(openai.APIConnectionError):
        list(
            client.completions.create(
                model=MODEL,
                prompt="Hi",
                stream=True,
                extra_headers={"X-Mock-Fault": "abort_after=2"},
            )
        )


def test_embeddings_default_base64_and_float_agree(client: openai.OpenAI, admin: MockAdmin) -> None:
    default = client.embeddings.create(model=EMBEDDER, input=["hello", "world"])
    floats = client.embeddings.create(model=EMBEDDER, input="hello", encoding_format="float")
    assert len(default.data) == 2 and len(default.data[0].embedding) == 1536
    assert default.data[0].embedding == floats.data[0].embedding
    assert default.data[0].embedding != default.data[1].embedding
    small = client.embeddings.create(model=EMBEDDER, input="hello", dimensions=8)
    assert len(small.data[0].embedding) == 8
    (sent, _, _) = admin.requests()
    assert sent["body"]["encoding_format"] == "base64"
    assert sent["format"] == "openai_embeddings" and sent["finish_reason"] is None
    assert sent["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_embeddings_seed_changes_the_vectors(client: openai.OpenAI) -> None:
    one = client.embeddings.create(
        model=EMBEDDER, input="hello", extra_headers={"X-Mock-Seed": "1"}
    )
    two = client.embeddings.create(
        model=EMBEDDER, input="hello", extra_headers={"X-Mock-Seed": "2"}
    )
    assert one.data[0].embedding != two.data[0].embedding


def test_embeddings_faults_and_bad_requests(client: openai.OpenAI, mock_url: str) -> None:
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(
            model=EMBEDDER, input="hi", extra_headers={"X-Mock-Fault": "status=500"}
        )
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(
            model=EMBEDDER, input="hi", extra_headers={"X-Mock-Fault": "abort_after=0"}
        )
    bad = httpx.post(f"{mock_url}/v1/embeddings", json={"model": EMBEDDER, "input": [1.5]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-unknown", input="hi")
