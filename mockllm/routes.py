"""Which wire format answers a request: one table of (method, path) -> format.

The app (``app.py``) looks the request up here first; a format's path with another method, and
every other path, go to the admin routes (``admin.py``), which answer 404 or 405.
Gemini's paths carry the model (``/v1beta/models/{model}:generateContent``), so they are
matched by their prefix and suffix.
"""

from __future__ import annotations

from mockllm.formats.anthropic import AnthropicMessages
from mockllm.formats.base import Format
from mockllm.formats.chat_completions import CHAT
from mockllm.formats.completions import Completions
from mockllm.formats.embeddings import Embeddings
from mockllm.formats.gemini import Gemini, gemini_method
from mockllm.formats.ollama import OllamaChat, OllamaGenerate
from mockllm.formats.responses import OpenAIResponses

__all__ = ["FORMATS", "FORMAT_PATHS", "GEMINI", "format_of_path", "route"]

FORMATS: dict[tuple[str, str], Format] = {
    ("POST", "/v1/chat/completions"): CHAT,
    ("POST", "/v1/messages"): AnthropicMessages(),
    ("POST", "/v1/responses"): OpenAIResponses(),
    ("POST", "/v1/completions"): Completions(),
    ("POST", "/v1/embeddings"): Embeddings(),
    ("POST", "/api/chat"): OllamaChat(),
    ("POST", "/api/generate"): OllamaGenerate(),
}
#: every path a format answers (another method there gets a 405)
FORMAT_PATHS: frozenset[str] = frozenset(path for _, path in FORMATS)


GEMINI = Gemini()


def route(method: str, path: str) -> Format | None:
    """The format answering ``method path``, or None (an admin path, or no such route)."""
    fmt = FORMATS.get((method, path))
    if fmt is None and method == "POST" and gemini_method(path) is not None:
        return GEMINI
    return fmt


_BY_PATH: dict[str, Format] = {path: fmt for (_, path), fmt in FORMATS.items()}


def format_of_path(path: str) -> Format:
    """The format whose errors a request to ``path`` gets (any method): OpenAI's elsewhere."""
    if gemini_method(path) is not None:
        return GEMINI
    return _BY_PATH.get(path, CHAT)
