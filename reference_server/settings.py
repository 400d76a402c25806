"""Every setting of the server, read once from the environment (prefix ``STREAMHARNESS_SERVER_``).

CLI flags override the environment (``cli.py`` passes them as init arguments). Library code gets
a :class:`Settings` object passed in and never reads ``os.environ`` itself.
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from reference_server.providers import ProviderName, base_url_problem

__all__ = ["ENV_PREFIX", "LOG_LEVELS", "Settings"]

ENV_PREFIX = "STREAMHARNESS_SERVER_"
OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434/api"
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- where to listen and what to call
    # An empty host would bind every interface: say 0.0.0.0 (or ::) to mean that.
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=0, le=65535)
    # Which provider adapter speaks to the upstream (reference_server/providers/).
    provider: ProviderName = "openai"
    # The base URL the provider's path is appended to (default: ollama's own for ollama).
    upstream_url: str = "http://127.0.0.1:8080/v1"
    api_key: SecretStr | None = None
    default_model: str = Field(default="gpt-4o-mini", min_length=1)
    # max_tokens asked of the provider when a client gives none (None: none is sent, except to
    # Anthropic, whose API requires one: 4096 there).
    default_max_tokens: int | None = Field(default=None, gt=0)

    # --- heartbeat and resume
    heartbeat_interval_s: float = Field(default=15.0, gt=0)
    # A peer silent this long (no pong to WebSocket ping frames, no message at all) is closed.
    # Default: twice the interval.
    heartbeat_timeout_s: float | None = Field(default=None, gt=0)
    # A stream with no reader keeps generating this long so a reconnect can resume it.
    resume_grace_s: float = Field(default=10.0, ge=0)
    # Streams created over HTTP (SSE, polling) may wait this long for their first/next reader.
    http_stream_idle_s: float = Field(default=30.0, gt=0)
    # Finished streams stay resumable (replay only) this long, then only a tombstone remains.
    stream_retention_s: float = Field(default=60.0, ge=0)

    # --- where streams live (reference_server/redis_store.py)
    # "memory": this process only. "redis://host:port/db": shared by every worker using it.
    store: str = "memory"
    # Worker processes sharing the listening socket (more than one needs a redis store).
    workers: int = Field(default=1, ge=1, le=64)
    # A stream's owner renews its lease this often (1 s); a lease this old means it died.
    redis_lease_s: float = Field(default=5.0, gt=1)
    # Events kept per stream in Redis (MAXLEN): a longer stream cannot be replayed from 0.
    redis_max_stream_events: int = Field(default=100_000, gt=0)
    redis_key_prefix: str = Field(default="sh:", min_length=1)

    # --- upstream
    upstream_connect_timeout_s: float = Field(default=5.0, gt=0)
    # No byte from the provider for this long = stalled; the stream fails with upstream_timeout.
    upstream_read_timeout_s: float = Field(default=30.0, gt=0)
    upstream_max_retries: int = Field(default=3, ge=0)
    upstream_backoff_base_s: float = Field(default=0.2, ge=0)
    upstream_backoff_max_s: float = Field(default=4.0, ge=0)
    # A Retry-After longer than this is not waited for: the client gets a retryable error.
    upstream_max_retry_after_s: float = Field(default=10.0, ge=0)
    upstream_max_connections: int = Field(default=1000, gt=0)
    upstream_retry_seed: int = 0

    # --- limits and hygiene
    max_message_bytes: int = Field(default=64 * 1024, gt=0)
    max_streams_per_connection: int = Field(default=8, gt=0)
    messages_per_second: float = Field(default=20.0, gt=0)
    message_burst: int = Field(default=40, gt=0)
    send_queue_max_messages: int = Field(default=256, gt=0)
    # A single frame that cannot be written this long means the reader stopped reading.
    send_timeout_s: float = Field(default=10.0, gt=0)
    # Empty = any Origin. Comma-separated in the environment.
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Non-browser clients send no Origin header; refuse them too by setting this to false.
    allow_missing_origin: bool = True
    auth_token: SecretStr | None = None
    shutdown_grace_s: float = Field(default=3.0, ge=0)
    sse_retry_ms: int = Field(default=1000, ge=0)

    # --- garbage collection (reference_server/collector.py)
    # Full collections stall every stream; run them when idle or at most this often under
    # load instead of CPython's automatic ones. 0 = leave CPython's policy alone.
    full_gc_interval_s: float = Field(default=60.0, ge=0)

    # --- WebSocket implementation (passed to uvicorn by the CLI)
    # permessage-deflate costs CPU on every frame and keeps two zlib contexts (hundreds of KiB)
    # per socket for frames of ~60 bytes; browsers always offer it, so it is off unless asked for.
    ws_per_message_deflate: bool = False
    # uvicorn's WebSocket protocol implementation; "websockets-sansio" is what uvicorn's "auto"
    # picks too, named here so a uvicorn upgrade cannot silently change it.
    ws_backend: Literal["websockets-sansio", "websockets", "wsproto"] = "websockets-sansio"

    log_level: LogLevel = "warning"

    @field_validator("upstream_url")
    @classmethod
    def _http_url(cls, value: str, info: ValidationInfo) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, got {value!r}")
        # provider is declared first: validated already (absent when it was invalid).
        problem = base_url_problem(info.data.get("provider", "openai"), value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value == "memory":
            return value
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            raise ValueError(
                f"must be 'memory' or a Redis URL (redis://host:port/0, rediss://, unix://), "
                f"got {value!r}"
            )
        return value

    @field_validator("api_key", "auth_token")
    @classmethod
    def _one_line_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(c in value.get_secret_value() for c in "\r\n\0"):
            raise ValueError("must be one line (no CR, LF or NUL): it goes into an HTTP header")
        return value

    @field_validator("auth_token")
    @classmethod
    def _auth_token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # A blank token (an unset shell variable) would otherwise turn authentication off.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be blank; leave it unset to accept every client")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _provider_default_url(cls, data: Any) -> Any:
        # Ollama listens on its own port under /api; the others' default is the mock's /v1.
        if (
            isinstance(data, dict)
            and data.get("provider") == "ollama"
            and "upstream_url" not in data
        ):
            return {**data, "upstream_url": OLLAMA_DEFAULT_URL}
        return data

    @model_validator(mode="after")
    def _heartbeat_timeout_covers_an_interval(self) -> Self:
        # A timeout shorter than the interval would close healthy peers between two pings.
        if self.heartbeat_timeout_s is not None and (
            self.heartbeat_timeout_s <= self.heartbeat_interval_s
        ):
            raise ValueError(
                f"heartbeat_timeout_s ({self.heartbeat_timeout_s}) must be greater than "
                f"heartbeat_interval_s ({self.heartbeat_interval_s})"
            )
        return self

    @model_validator(mode="after")
    def _workers_share_a_store(self) -> Self:
        # Streams in one worker's memory are unknown to the others: resumes would fail.
        if self.workers > 1 and self.store == "memory":
            raise ValueError(
                f"workers={self.workers} needs a shared store: set store to a redis:// URL"
            )
        return self

    @property
    def heartbeat_deadline_s(self) -> float:
        """The effective heartbeat timeout."""
        if self.heartbeat_timeout_s is not None:
            return self.heartbeat_timeout_s
        return 2 * self.heartbeat_interval_s
