"""A small deterministic tokenizer producing realistic sub-word tokens.

It imitates the shape of byte-pair-encoding tokenizers (cl100k, o200k) without their
vocabularies: a word keeps its leading space (``" hello"``), punctuation stands alone, digits
come in groups of at most three, and long words are split into a stem and common suffixes or
fixed-width pieces. The result is not OpenAI's tokenization, but token counts, bytes per token
and tokens per chunk land in the same range, which is what a streaming harness measures.

Joining the tokens always gives back the input text exactly.
"""

from __future__ import annotations

import re

__all__ = ["count_tokens", "tokenize"]

# Contractions, words with an optional leading space, digit groups, one punctuation mark,
# then runs of whitespace (a trailing newline run stays one token, like BPE tokenizers do).
_PRE_TOKEN = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)\b"
    r"| ?[^\W\d_]+"
    r"| ?\d{1,3}"
    r"| ?[^\s\w]"
    r"|_"
    r"|\n+"
    r"|\s+(?!\S)"
    r"|\s",
    re.UNICODE,
)

# Common English suffixes: BPE vocabularies learn these as separate tokens.
_SUFFIXES = ("ation", "ment", "ness", "able", "tion", "ing", "ies", "ous", "ful", "ed", "ly", "er")

# Words up to this many letters (without the leading space) stay one token.
_WHOLE_WORD_MAX = 7
_PIECE = 4


# Longer pre-tokens are split without the cache: a prompt may be one megabyte-long "word",
# and the cache would keep every such string alive.
_CACHED_WORD_MAX = 64
# Pre-token -> its pieces. A plain dict, filled until full: answers and prompts draw on a
# small vocabulary, and a lookup here is most of what tokenizing a word costs.
_PIECES: dict[str, tuple[str, ...]] = {}
_PIECES_MAX = 65536


def _split_word(word: str) -> tuple[str, ...]:
    """Split one pre-token (maybe with a leading space) into sub-word pieces."""
    pieces = _PIECES.get(word)
    if pieces is None:
        pieces = _split(word)
        if len(word) <= _CACHED_WORD_MAX and len(_PIECES) < _PIECES_MAX:
            _PIECES[word] = pieces
    return pieces


def _split(word: str) -> tuple[str, ...]:
    body = word[1:] if word.startswith(" ") else word
    if len(body) <= _WHOLE_WORD_MAX or not body.isalpha():
        return (word,)
    lead = word[: len(word) - len(body)]
    suffix = ""
    lower = body.lower()
    for candidate in _SUFFIXES:
        if lower.endswith(candidate) and len(body) - len(candidate) >= 3:
            suffix = body[len(body) - len(candidate) :]
            body = body[: len(body) - len(candidate)]
            break
    pieces: list[str] = []
    # The first piece keeps the leading space and is a little longer, as in real vocabularies.
    first = min(len(body), _PIECE + 2)
    pieces.append(lead + body[:first])
    # Sliced by index: cutting the rest off piece by piece copied it each time, quadratic in
    # the word's length (a 1 MB word held the event loop for 4 s).
    pieces.extend(body[i : i + _PIECE] for i in range(first, len(body), _PIECE))
    if len(pieces) > 1 and len(pieces[-1]) < 2:
        # A one-letter tail looks nothing like a real token: glue it to the piece before.
        tail = pieces.pop()
        pieces[-1] += tail
    if suffix:
        pieces.append(suffix)
    return tuple(pieces)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens; ``"".join(tokenize(text)) == text`` always holds."""
    words = _PRE_TOKEN.findall(text)
    if sum(map(len, words)) == len(text):
        # The pattern matched the whole text (the usual case): no gaps to keep.
        tokens: list[str] = []
        extend = tokens.extend
        known = _PIECES.get
        for word in words:
            extend(known(word) or _split_word(word))
        return tokens
    return _tokenize_with_gaps(text)


def _tokenize_with_gaps(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    for match in _PRE_TOKEN.finditer(text):
        if match.start() != pos:
            # Anything the pattern skipped (it should not happen) is kept as its own token so
            # the round trip stays exact.
            tokens.append(text[pos : match.start()])
        tokens.extend(_split_word(match.group()))
        pos = match.end()
    if pos != len(text):
        tokens.append(text[pos:])
    return tokens


def count_tokens(text: str) -> int:
    return len(tokenize(text))
