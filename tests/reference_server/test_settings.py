from __future__ import annotations

import pytest

from reference_server.settings import Settings


def test_environment_prefix_and_origin_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMHARNESS_SERVER_HEARTBEAT_INTERVAL_S", "1.5")
    monkeypatch.setenv("STREAMHARNESS_SERVER_ALLOWED_ORIGINS", "http://a, http://b")
    monkeypatch.setenv("STREAMHARNESS_SERVER_AUTH_TOKEN", "sekrit")
    settings = Settings()
    assert settings.heartbeat_interval_s == 1.5
    assert settings.allowed_origins == ["http://a", "http://b"]
    assert settings.auth_token is not None
    assert settings.auth_token.get_secret_value() == "sekrit"
    assert "sekrit" not in repr(settings)


def test_init_arguments_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMHARNESS_SERVER_PORT", "9000")
    assert Settings(port=0).port == 0


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMHARNESS_SERVER_MAX_MESSAGE_BYTES", "-1")
    with pytest.raises(ValueError, match="max_message_bytes"):
        Settings()


def test_heartbeat_timeout_must_exceed_interval() -> None:
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        Settings(heartbeat_interval_s=5, heartbeat_timeout_s=5)


def test_heartbeat_timeout_defaults_to_twice_the_interval() -> None:
    assert Settings(heartbeat_interval_s=3).heartbeat_deadline_s == 6
    assert Settings(heartbeat_interval_s=3, heartbeat_timeout_s=4).heartbeat_deadline_s == 4


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "ftp://host/v1", "http:///v1"])
def test_upstream_url_must_be_http_with_a_host(url: str) -> None:
    with pytest.raises(ValueError, match="upstream_url"):
        Settings(upstream_url=url)


def test_api_key_must_be_one_line() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Settings(api_key="sk-1\nX-Evil: 1")
    assert Settings(api_key="sk-1").api_key is not None


def test_log_level_is_one_of_uvicorn_s_in_any_case() -> None:
    assert Settings(log_level="INFO").log_level == "info"
    with pytest.raises(ValueError, match="log_level"):
        Settings(log_level="nonsense")


@pytest.mark.parametrize("token", ["", "  "])
def test_a_blank_auth_token_is_refused_not_taken_for_none(token: str) -> None:
    # An unset shell variable would otherwise turn authentication off without a word.
    with pytest.raises(ValueError, match="auth_token"):
        Settings(auth_token=token)


@pytest.mark.parametrize("field", ["host", "default_model"])
def test_host_and_default_model_are_not_empty(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(**{field: ""})


def test_the_provider_is_openai_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().provider == "openai"
    monkeypatch.setenv("STREAMHARNESS_SERVER_PROVIDER", "anthropic")
    assert Settings().provider == "anthropic"
    assert Settings().upstream_url == "http://127.0.0.1:8080/v1"  # Anthropic's base is …/v1 too
    with pytest.raises(ValueError, match="provider"):
        Settings(provider="gemini")


def test_ollama_defaults_to_its_own_port_and_api_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(provider="ollama").upstream_url == "http://127.0.0.1:11434/api"
    monkeypatch.setenv("STREAMHARNESS_SERVER_PROVIDER", "ollama")
    assert Settings().upstream_url == "http://127.0.0.1:11434/api"
    monkeypatch.setenv("STREAMHARNESS_SERVER_UPSTREAM_URL", "http://gpu-box:11434/api")
    assert Settings().upstream_url == "http://gpu-box:11434/api"


def test_a_base_url_that_does_not_fit_the_provider_is_refused() -> None:
    with pytest.raises(ValueError, match=r"(?s)upstream_url.*use --provider openai"):
        Settings(provider="ollama", upstream_url="http://127.0.0.1:11434/v1")
    with pytest.raises(ValueError, match=r"(?s)upstream_url.*appends /messages"):
        Settings(provider="anthropic", upstream_url="https://api.anthropic.com")


def test_default_max_tokens_is_unset_or_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().default_max_tokens is None
    monkeypatch.setenv("STREAMHARNESS_SERVER_DEFAULT_MAX_TOKENS", "1000")
    assert Settings().default_max_tokens == 1000
    with pytest.raises(ValueError, match="default_max_tokens"):
        Settings(default_max_tokens=0)
