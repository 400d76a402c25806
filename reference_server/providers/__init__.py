"""Provider adapters: how to ask one provider for a streamed answer, and how to read it.

An adapter is a :class:`Provider`: the path it appends to the configured base URL, its
headers (the vendor's auth header among them), the request body built from the conversation
(the OpenAI chat body the server holds), and a fresh pure :class:`StreamDecoder` per response
that turns the provider's stream into the internal events of ``events.py``. Everything else
(connections, retries, timeouts, cancel) is the upstream client's and the same for all
(``reference_server/upstream.py``). Chosen by the ``provider`` setting (``--provider``):

=========  ========================  ===================  ==============================
name       base URL (``--upstream``)  request              stream
=========  ========================  ===================  ==============================
openai     ``…/v1``                   ``/chat/completions``  SSE ``data:`` chunks, ``[DONE]``
anthropic  ``…/v1``                   ``/messages``          SSE named events, ``message_stop``
ollama     ``…/api``                  ``/chat``              NDJSON lines, ``done: true``
=========  ========================  ===================  ==============================

The base URL ends where the provider's paths begin, as the Vercel AI SDK's ``baseURL`` does.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, Literal, Protocol, get_args

from reference_server.providers.anthropic import AnthropicMessages
from reference_server.providers.events import (
    StreamDecoder,
    UpstreamEvent,
    UpstreamFinish,
    UpstreamToken,
    UpstreamToolCall,
)
from reference_server.providers.ollama import OllamaChat
from reference_server.providers.openai_chat import OpenAIChat

__all__ = [
    "BASE_PATHS",
    "PROVIDER_NAMES",
    "Provider",
    "ProviderName",
    "StreamDecoder",
    "UpstreamEvent",
    "UpstreamFinish",
    "UpstreamToken",
    "UpstreamToolCall",
    "base_url_problem",
    "provider_named",
]

ProviderName = Literal["openai", "anthropic", "ollama"]
PROVIDER_NAMES: tuple[str, ...] = get_args(ProviderName)
# The path of each provider's base URL on its host (the mock serves them all on one host).
BASE_PATHS: dict[str, str] = {"openai": "/v1", "anthropic": "/v1", "ollama": "/api"}


class Provider(Protocol):
    """One provider's request and stream format (see the module docstring)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...
    def headers(self, api_key: str | None) -> dict[str, str]: ...
    def request_body(self, chat: Mapping[str, Any]) -> dict[str, Any]: ...
    def decoder(self) -> StreamDecoder: ...


_ADAPTERS: dict[str, type[Provider]] = {
    "openai": OpenAIChat,
    "anthropic": AnthropicMessages,
    "ollama": OllamaChat,
}

# The base URL each provider's paths hang off, as users meet it elsewhere.
_EXAMPLES = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "ollama": "http://127.0.0.1:11434/api",
}


def provider_named(name: str) -> Provider:
    try:
        return _ADAPTERS[name]()
    except KeyError:
        raise ValueError(
            f"unknown provider {name!r}: choose one of {', '.join(PROVIDER_NAMES)}"
        ) from None


def base_url_problem(name: str, url: str) -> str | None:
    """What is likely wrong with ``url`` as ``name``'s base URL, or None.

    Catches the mistakes that would otherwise be a puzzling 404 on every request: a root URL
    (copied from ``ANTHROPIC_BASE_URL`` or ``OLLAMA_HOST``, which the SDKs extend themselves)
    and Ollama's OpenAI-compatible ``/v1`` given to the native adapter.
    """
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    if name == "ollama" and path.endswith("/v1"):
        return (
            f"{url} is Ollama's OpenAI-compatible API: use --provider openai for it, or give "
            f"the native API's base (e.g. {_EXAMPLES['ollama']})"
        )
    if name in ("anthropic", "ollama") and not path:
        return (
            f"the {name} provider appends {provider_named(name).path} to its base URL, which "
            f"includes the API's path (e.g. {_EXAMPLES[name]}), got {url}"
        )
    return None
