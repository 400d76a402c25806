"""mockllm.content: seeded prose and schema-shaped tool arguments."""

from __future__ import annotations

import json

from mockllm.content import LoremAnswer, derive_seed, lorem_answer, lorem_tokens, tool_arguments
from mockllm.lazyseq import LazyList


def test_derive_seed_is_stable_and_sensitive() -> None:
    assert derive_seed(1, "a", [{"x": 1}]) == derive_seed(1, "a", [{"x": 1}])
    assert derive_seed(1, "a") != derive_seed(2, "a")
    # sha256 of the canonical JSON '[0]': the seed must not depend on the process (Python's
    # hash() is salted), so it is pinned here.
    assert derive_seed(0) == 0xD0BCA111F8628137


def test_lorem_has_exactly_the_requested_tokens_and_reads_like_prose() -> None:
    tokens = lorem_tokens(7, 60)
    assert len(tokens) == 60
    text = "".join(tokens)
    assert text[0].isupper()
    assert "." in text or "?" in text or "!" in text
    assert lorem_tokens(7, 60) == tokens
    assert lorem_tokens(8, 60) != tokens
    assert lorem_tokens(7, 10) == tokens[:10]
    assert lorem_tokens(7, 0) == []


def test_tool_arguments_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer"},
            "lat": {"type": "number"},
            "alerts": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "where": {"type": "object", "properties": {"zip": {"type": ["string", "null"]}}},
        },
    }
    args = json.loads(tool_arguments(3, schema))
    assert isinstance(args["city"], str) and args["city"]
    assert args["unit"] in ("c", "f")
    assert isinstance(args["days"], int) and not isinstance(args["days"], bool)
    assert isinstance(args["lat"], float)
    assert isinstance(args["alerts"], bool)
    assert len(args["tags"]) == 2 and all(isinstance(t, str) for t in args["tags"])
    assert isinstance(args["where"]["zip"], str)
    assert tool_arguments(3, schema) == tool_arguments(3, schema)
    assert tool_arguments(3, {}) == "{}"
    assert tool_arguments(3, "not a schema") == "{}"


def test_answers_look_like_a_models_paragraphs_lists_code_and_unicode() -> None:
    texts = ["".join(lorem_tokens(seed, 400)) for seed in range(40)]
    every = "\n".join(texts)
    assert all("\n\n" in t for t in texts)  # paragraphs
    assert "\n- " in every and "\n1. " in every  # lists
    assert "```python\n" in every and "\n    " in every and "\n\t" in every  # code
    assert any(ch in every for ch in "数🙂🚀✅") and "\u0301" in every  # unicode
    whitespace_only = {t for seed in range(12) for t in lorem_tokens(seed, 400) if not t.strip()}
    assert "\n\n" in whitespace_only and "\n" in whitespace_only


def test_lorem_answer_is_lorem_tokens_made_as_read() -> None:
    seed = 123_456_789  # not used by another test: nothing made yet
    answer = lorem_answer(seed, 3000)
    assert isinstance(answer, LoremAnswer) and len(answer) == 3000 and answer.made == 0
    assert answer[:3] == lorem_tokens(seed, 3)
    assert answer.made < 100  # one paragraph, not the whole answer
    assert answer[-1] == lorem_tokens(seed, 3000)[-1]
    assert list(answer) == lorem_tokens(seed, 3000) and answer == lorem_tokens(seed, 3000)
    assert answer[10:5] == [] and answer[::1000] == lorem_tokens(seed, 3000)[::1000]
    long = lorem_answer(seed, 5000)  # past what is kept per seed: made privately, as read
    assert isinstance(long, LazyList) and long.made == 0
    assert long[:3000] == list(answer)


def test_answers_of_one_seed_share_what_is_made() -> None:
    seed = 987_654_321
    first, second = lorem_answer(seed, 50), lorem_answer(seed, 80)
    assert isinstance(first, LoremAnswer) and isinstance(second, LoremAnswer)
    list(second)
    assert first.made == 50  # made once, for both
    assert list(first) == lorem_tokens(seed, 50) and list(second) == lorem_tokens(seed, 80)


def test_answers_kept_are_bounded_least_recently_asked_first() -> None:
    from mockllm import content

    lorem_answer(555, 3)
    for other in range(content._CACHE_ANSWERS - 1):
        lorem_answer(10**12 + other, 3)
    lorem_answer(555, 3)  # asked again: now the most recent
    lorem_answer(10**13, 3)
    assert len(content._cache) == content._CACHE_ANSWERS
    assert 555 in content._cache and 10**12 not in content._cache


def test_derive_seed_of_ints_is_the_json_one() -> None:
    import hashlib

    for parts in [(0,), (1, 2), (2**63 - 1, -5, 0), (123456789012345678901234567890, 7)]:
        blob = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=str)
        expected = int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")
        assert derive_seed(*parts) == expected
    assert derive_seed(True, 1) != derive_seed(1, 1)  # a bool is not an int here: "true"
