"""Credentials out of the ledger: a header that carries a secret is kept as a fingerprint.

The server under test sends its provider key to the mock (``Authorization: Bearer sk-...``);
the ledger, the admin API that serves it and the reports built from it must not give that key
to whoever can read them. A fingerprint still tells which key was sent::

    fingerprint("sk-proj-abc123xyz7890")  ->  "[redacted ...7890 sha256:83f9bdbd]"

that is the last four characters (only for secrets of at least :data:`MIN_LENGTH_FOR_TAIL`
characters, so a short one is not half given away) and the first 8 hex digits of the secret's
SHA-256. The hash is unsalted so that a test can compute the same string from a key it knows;
it identifies one of a few known keys, it does not make the ledger a place for secrets.

In a header with an auth scheme (``Bearer``, ``Basic``...) the scheme stays readable and only
the credential is fingerprinted, so a test asserts
``entry["headers"]["authorization"] == "Bearer " + fingerprint(key)``, or simply
``== redact_header("authorization", "Bearer " + key)``. Pure: strings in, strings out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

__all__ = [
    "CREDENTIAL_HEADERS",
    "MIN_LENGTH_FOR_TAIL",
    "fingerprint",
    "redact_header",
    "redact_headers",
]

#: Request headers (lower case) whose value is a secret: HTTP auth, the API-key headers of
#: Azure OpenAI (``api-key``), Anthropic (``x-api-key``), Google (``x-goog-api-key``), Azure
#: API Management, and cookies (session tokens).
CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "x-auth-token",
        "ocp-apim-subscription-key",
        "cookie",
    }
)
#: Headers whose value is ``<scheme> <credential>`` (RFC 9110 section 11).
_SCHEMED = frozenset({"authorization", "proxy-authorization"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*) +(\S.*)\Z", re.DOTALL)

#: A secret shorter than this shows no characters at all, only its hash.
MIN_LENGTH_FOR_TAIL: Final = 12


def fingerprint(secret: str) -> str:
    """What the ledger keeps of ``secret``: ``[redacted ...LAST4 sha256:8HEX]``."""
    digest = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if len(secret) >= MIN_LENGTH_FOR_TAIL:
        return f"[redacted ...{secret[-4:]} sha256:{digest}]"
    return f"[redacted sha256:{digest}]"


def redact_header(name: str, value: str) -> str:
    """The value the ledger records for header ``name`` (any case): itself unless it is one of
    :data:`CREDENTIAL_HEADERS`."""
    lower = name.lower()
    if lower not in CREDENTIAL_HEADERS:
        return value
    if lower in _SCHEMED:
        match = _SCHEME.match(value)
        if match:
            return f"{match.group(1)} {fingerprint(match.group(2))}"
    return fingerprint(value)


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as the ledger keeps them (a repeated name: the last value wins, as before)."""
    return {name: redact_header(name, value) for name, value in headers}
