"""mockllm.redact: what the ledger keeps of a credential header, and the fingerprint's shape."""

from __future__ import annotations

import hashlib
import re

import pytest

from mockllm import fingerprint, redact_header
from mockllm.redact import CREDENTIAL_HEADERS, MIN_LENGTH_FOR_TAIL, redact_headers

KEY = "sk-proj-abc123xyz7890"


def test_the_fingerprint_has_the_documented_shape() -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()[:8]
    assert fingerprint(KEY) == f"[redacted ...7890 sha256:{digest}]"
    assert re.fullmatch(r"\[redacted \.\.\.\S{4} sha256:[0-9a-f]{8}\]", fingerprint(KEY))


def test_a_short_secret_shows_no_characters() -> None:
    short = "x" * (MIN_LENGTH_FOR_TAIL - 1)
    assert re.fullmatch(r"\[redacted sha256:[0-9a-f]{8}\]", fingerprint(short))
    assert re.fullmatch(r"\[redacted sha256:[0-9a-f]{8}\]", fingerprint("test"))


def test_fingerprints_tell_keys_apart() -> None:
    assert fingerprint(KEY) == fingerprint(KEY)
    assert fingerprint(KEY) != fingerprint(KEY[:-1] + "1")
    assert fingerprint("a" * 20) != fingerprint("b" + "a" * 19)  # same last four


def test_an_auth_scheme_stays_readable() -> None:
    assert redact_header("Authorization", f"Bearer {KEY}") == f"Bearer {fingerprint(KEY)}"
    assert redact_header("proxy-authorization", "Basic dXNlcjpwYXNzd29yZA==") == (
        "Basic " + fingerprint("dXNlcjpwYXNzd29yZA==")
    )
    # No scheme: the whole value is the secret.
    assert redact_header("authorization", KEY) == fingerprint(KEY)


@pytest.mark.parametrize("name", sorted(CREDENTIAL_HEADERS))
def test_every_credential_header_is_redacted_in_any_case(name: str) -> None:
    for spelling in (name, name.upper(), name.title()):
        redacted = redact_header(spelling, KEY)
        assert KEY not in redacted and fingerprint(KEY) in redacted


def test_other_headers_are_kept_as_sent() -> None:
    headers = [
        ("content-type", "application/json"),
        ("x-mock-tokens", "4"),
        ("x-api-key", KEY),
        ("cookie", f"session={KEY}; theme=dark"),
    ]
    assert redact_headers(headers) == {
        "content-type": "application/json",
        "x-mock-tokens": "4",
        "x-api-key": fingerprint(KEY),
        "cookie": fingerprint(f"session={KEY}; theme=dark"),
    }
