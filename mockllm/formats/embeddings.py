"""OpenAI Embeddings (``POST /v1/embeddings``): deterministic vectors, as floats or base64.

Each input's vector is a pure function of (the server seed, the request's seed, the input
text, the dimensions): unit length, little-endian float32 values (WIRE_FORMATS.md 1.7). The
``openai`` SDK asks for ``encoding_format: "base64"`` unless told otherwise and decodes it;
``"float"`` gives the same numbers as a JSON list. Rules, controls and faults apply as for a
chat request whose user message is the inputs, one per line; the answer's timing is that of
a non-streamed chat answer (its TTFT with ``instant``).
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from mockllm.content import derive_seed
from mockllm.errors import InvalidRequest
from mockllm.formats.base import OpenAIFormat, dumps, expect, positive_int, required_model
from mockllm.generation import Action, Body, Plan
from mockllm.request import ChatRequest
from mockllm.tokenizer import count_tokens

__all__ = ["DEFAULT_DIMENSIONS", "Embeddings", "embedding"]

#: text-embedding-3-small's size
DEFAULT_DIMENSIONS = 1536
_MAX_DIMENSIONS = 8192
_MAX_INPUTS = 2048
# More values than this are made in a worker thread (about 1 ms of the event loop).
_INLINE_VALUES = 16 * DEFAULT_DIMENSIONS


def embedding(seed: int, text: str, dimensions: int) -> list[float]:
    """A unit vector of float32 values, seeded by ``seed`` and ``text``.

    The components are uniform, drawn from SHAKE-256 of the seed and the text (one C call
    for the whole vector: a request may carry 2,048 inputs of 1,536 dimensions)."""
    key = f"{seed}:{dimensions}:{text}".encode()
    values = struct.unpack(f"<{dimensions}h", hashlib.shake_256(key).digest(2 * dimensions))
    norm = math.sqrt(math.fsum(v * v for v in values)) or 1.0
    # Rounded to float32 here, so that the float and base64 answers carry the same numbers.
    packed = struct.pack(f"<{dimensions}f", *[v / norm for v in values])
    return list(struct.unpack(f"<{dimensions}f", packed))


def _inputs(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if value is None:
        raise InvalidRequest(
            "Missing required parameter: 'input'.", param="input", code="missing_required_parameter"
        )
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and len(value) <= _MAX_INPUTS:
        if all(isinstance(v, str) for v in value):
            return list(value)
        # Token arrays: their text is their numbers (the vector is still seeded by them).
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [" ".join(map(str, value))]
        if all(isinstance(v, list) for v in value):
            return [" ".join(map(str, v)) for v in value]
    raise InvalidRequest(
        "Invalid 'input': expected a string, an array of 1 to 2048 strings, or token arrays.",
        param="input",
        code="invalid_value",
    )


def parse_embeddings_request(body: dict[str, Any]) -> ChatRequest:
    model = required_model(body)
    inputs = _inputs(body)
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest(
            "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = positive_int(body, "dimensions")
    if dimensions is not None and dimensions > _MAX_DIMENSIONS:
        raise InvalidRequest(
            f"Invalid 'dimensions': at most {_MAX_DIMENSIONS}.",
            param="dimensions",
            code="integer_above_max_value",
        )
    seed = expect(body, "seed", int, "an integer")
    return ChatRequest(
        model=model,
        messages=({"role": "user", "content": "\n".join(inputs)},),
        # nothing is generated: no text is made for the plan
        max_tokens=1,
        seed=seed,
    )


class Embeddings(OpenAIFormat):
    name = "openai_embeddings"
    id_prefix = "emb-"
    generates_text = False

    def parse(self, body: dict[str, Any], path: str) -> ChatRequest:
        return parse_embeddings_request(body)

    def build_in_thread(self, body: dict[str, Any]) -> bool:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        return count * (body.get("dimensions") or DEFAULT_DIMENSIONS) > _INLINE_VALUES

    def body(self, plan: Plan, body: dict[str, Any], created: int, server_seed: int) -> Body:
        inputs = _inputs(body)
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        request_seed = plan.control.seed if plan.control.seed is not None else body.get("seed")
        seed = derive_seed(server_seed, request_seed)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = embedding(seed, text, dimensions)
            value: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(count_tokens(text) for text in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        payload = dumps({"object": "list", "data": data, "model": plan.model, "usage": usage})
        faults = plan.control.faults
        due = plan.ttft
        if faults.abort_after is not None:
            return Body((due, payload, 0, Action.ABORT), "fault:abort_after", (), usage)
        if faults.malformed_after is not None:
            half = payload[: len(payload) // 2]
            return Body((due, half, 0, Action.WRITE), "fault:malformed_after", (), usage)
        return Body((due, payload, 0, Action.WRITE), "completed", (), usage)
