"""Deterministic answer content: seeded prose, echo, and tool-call arguments.

Everything here is a pure function of its arguments; randomness comes from a
``random.Random`` built from a seed the caller derives with :func:`derive_seed`.
:func:`lorem_answer` gives the same tokens as :func:`lorem_tokens`, made block by block as a
stream reaches them, and shares them between the answers of one seed: a load test sends the
same prompts again and again (and at once), and each answer would otherwise cost about a
microsecond per token.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any, overload

from mockllm.lazyseq import LazyList
from mockllm.tokenizer import tokenize

__all__ = [
    "LoremAnswer",
    "derive_seed",
    "lorem_answer",
    "lorem_blocks",
    "lorem_tokens",
    "tool_arguments",
]

# Plain English words so that the generated text tokenizes like ordinary prose.
_WORD_TEXT = """
the of and to in is that for it as with was on be by this are from at or an which
have not but all can has were more their one will about would there if what when
model stream token server client request response network latency buffer message
system answer question value result data time first last next every small large
quick simple careful steady final partial complete delayed ordered random signal
process connection protocol gateway browser window socket reader writer channel
river mountain garden morning evening summer winter window letter number pattern
measure explain consider observe provide continue return receive deliver observe
because however although therefore meanwhile usually rarely often quickly slowly
important different possible available particular interesting reasonable
understanding information development experience environment performance
configuration implementation documentation international relationship
"""
_WORDS = tuple(_WORD_TEXT.split())


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from JSON-serialisable parts (stable across runs and platforms).

    Python's ``hash()`` is salted per process, so it cannot be used here.
    """
    if all(type(part) is int for part in parts):
        # What json.dumps writes for a list of ints, without the encoder (several per request).
        blob = "[" + ",".join(map(str, parts)) + "]"
    else:
        blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")


def _sentence(rng: random.Random) -> str:
    length = rng.randint(6, 16)
    words = [rng.choice(_WORDS) for _ in range(length)]
    words[0] = words[0].capitalize()
    if length > 9 and rng.random() < 0.5:
        cut = rng.randint(3, length - 3)
        words[cut] += ","
    end = rng.choices((".", "?", "!"), weights=(16, 2, 1))[0]
    return " ".join(words) + end


# Words from other scripts, emoji and a combining mark (e + U+0301): text a relay must pass on
# byte for byte, which ASCII prose never tests.
_UNICODE_WORDS = (
    "café",
    "cafe\u0301",
    "naïve",
    "数据",
    "流式",
    "トークン",
    "поток",
    "🙂",
    "🚀",
    "✅",
    "Zürich",
    "São Paulo",
)
_IDENTIFIERS = ("value", "token", "stream", "buffer", "count", "delay", "chunk", "reader")


def _paragraph(rng: random.Random) -> str:
    sentences = [_sentence(rng) for _ in range(rng.randint(1, 3))]
    if rng.random() < 0.35:
        i = rng.randrange(len(sentences))
        word = rng.choice(_UNICODE_WORDS)
        sentences[i] = sentences[i][:-1] + f" ({word})" + sentences[i][-1]
    return " ".join(sentences)


def _list(rng: random.Random) -> str:
    numbered = rng.random() < 0.5
    items = []
    for n in range(1, rng.randint(2, 4) + 1):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
        items.append(f"{n}. {words.capitalize()}" if numbered else f"- {words}")
    return "\n".join(items)


def _code(rng: random.Random) -> str:
    name, arg = rng.choice(_IDENTIFIERS), rng.choice(_IDENTIFIERS)
    lines = [f"def {name}_{rng.randint(1, 99)}({arg}):"]
    lines.append(f"    if not {arg}:")
    lines.append("\treturn None" if rng.random() < 0.5 else "        return None")
    lines.append(f"    return {arg} * {rng.randint(2, 9)}")
    return "```python\n" + "\n".join(lines) + "\n```"


def _document(rng: random.Random) -> str:
    """One block of an answer: mostly prose, sometimes a list or a code block."""
    kind = rng.choices(("paragraph", "list", "code"), weights=(6, 2, 2))[0]
    return _paragraph(rng) if kind == "paragraph" else _list(rng) if kind == "list" else _code(rng)


def lorem_blocks(seed: int) -> Iterator[list[str]]:
    """The endless token stream of a seeded answer, one block (paragraph, list, code) at a
    time; an answer of ``count`` tokens is its first ``count`` tokens."""
    rng = random.Random(seed)
    yield tokenize(_paragraph(rng))
    while True:
        yield tokenize("\n\n" + _document(rng))


def lorem_tokens(seed: int, count: int) -> list[str]:
    """Exactly ``count`` tokens of a seeded answer (the last block may be cut short).

    Answers look like a model's: paragraphs separated by blank lines, bulleted and numbered
    lists, code blocks indented with spaces and a tab, and now and then a word in another
    script, an emoji or a combining accent. So the tokens include whitespace-only ones
    (``"\n\n"``, indentation): a relay that strips or drops whitespace is caught.
    """
    if count <= 0:
        return []
    tokens: list[str] = []
    for block in lorem_blocks(seed):
        tokens.extend(block)
        if len(tokens) >= count:
            break
    return tokens[:count]


class _Shared:
    """One seed's answer, made as far as any request of that seed has read it."""

    __slots__ = ("blocks", "lock", "made")

    def __init__(self, seed: int):
        self.made: list[str] = []
        self.blocks = lorem_blocks(seed)
        # Large non-streamed answers are built in a worker thread (chat.py).
        self.lock = threading.Lock()

    def fill(self, upto: int) -> None:
        if len(self.made) >= upto:
            return
        with self.lock:
            while len(self.made) < upto:
                self.made.extend(next(self.blocks))


class LoremAnswer(Sequence[str]):
    """The first ``count`` tokens of a seed's answer, made when first read and shared with
    every other answer of the same seed (the same prompt asked again, or at the same time)."""

    __slots__ = ("_count", "_shared")

    def __init__(self, shared: _Shared, count: int):
        self._shared = shared
        self._count = max(0, count)

    @property
    def made(self) -> int:
        """How many of its tokens exist so far (the laziness is observable)."""
        return min(len(self._shared.made), self._count)

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._count)
            self._shared.fill(stop if step == 1 else self._count)
            return self._shared.made[start:stop:step]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("LoremAnswer index out of range")
        self._shared.fill(index + 1)
        return self._shared.made[index]

    def __iter__(self) -> Iterator[str]:
        shared = self._shared
        for i in range(self._count):
            if i >= len(shared.made):
                shared.fill(i + 1)
            yield shared.made[i]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]


# Answers by seed, least recently asked first: at most _CACHE_ANSWERS of them, each made up to
# the longest prefix asked so far, answers of up to _CACHED_TOKENS_MAX tokens (a few MB at
# worst; token strings are shared with the tokenizer's cache). Longer ones are not kept.
_CACHE_ANSWERS = 256
_CACHED_TOKENS_MAX = 4096
_cache: dict[int, _Shared] = {}
_cache_lock = threading.Lock()


def lorem_answer(seed: int, count: int) -> Sequence[str]:
    """:func:`lorem_tokens` as a sequence whose tokens are made when first read."""
    if count > _CACHED_TOKENS_MAX:
        return LazyList(count, lorem_blocks(seed))
    with _cache_lock:
        shared = _cache.pop(seed, None)
        if shared is None:
            shared = _Shared(seed)
            while len(_cache) >= _CACHE_ANSWERS:
                del _cache[next(iter(_cache))]
        _cache[seed] = shared
    return LoremAnswer(shared, count)


def _value_for(schema: Any, rng: random.Random, name: str, depth: int) -> Any:
    if not isinstance(schema, dict):
        return rng.choice(_WORDS)
    if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or (kind is None and "properties" in schema):
        return _object_for(schema, rng, depth + 1)
    if kind == "array":
        if depth > 3:
            return []
        return [_value_for(schema.get("items", {}), rng, name, depth + 1) for _ in range(2)]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return round(rng.uniform(0, 100), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    words = rng.randint(1, 3)
    return " ".join(rng.choice(_WORDS) for _ in range(words)).title()


def _object_for(schema: dict[str, Any], rng: random.Random, depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    if not isinstance(props, dict) or depth > 4:
        return {}
    # Every property, required or not: a fuller object exercises more of the consumer's parser.
    return {str(key): _value_for(value, rng, str(key), depth) for key, value in props.items()}


def tool_arguments(seed: int, parameters: Any) -> str:
    """Seeded JSON arguments that satisfy a (simple) JSON schema, as a compact string."""
    rng = random.Random(seed)
    value = _object_for(parameters, rng, 0) if isinstance(parameters, dict) else {}
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
