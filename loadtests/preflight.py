"""Before a load run against ``--target``: does anything answer there?

Without this check a typo in the URL, or a server that is not up yet, costs the whole run time
and ends in a report of 100 % errors whose reason is in Locust's log. One TCP connect, then one
cheap HTTP request (``GET /``; any status counts as an answer: a WebSocket-only server says 404
or 426, which still proves it is a web server on that port).
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx

__all__ = ["target_problem"]

_WHAT_TO_DO = (
    "start the server, or fix --target (without --target, load starts the reference stack)"
)


def target_problem(url: str, timeout_s: float = 3.0) -> str | None:
    """``None`` when ``url`` (an http(s) URL) answers, else a sentence saying what is wrong
    and what to do."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        # The same words as `streamharness run --target URL` for the same mistake.
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"target {url} is unreachable ({host}:{port}: {reason}); {_WHAT_TO_DO}"
    try:
        # verify=False: this asks "is a web server there?", not "is its certificate valid?"
        # (Locust's users decide about certificates themselves).
        with httpx.Client(timeout=timeout_s, verify=False) as client:
            client.get(url + "/")
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        return (
            f"target {url} accepted a connection but did not answer an HTTP request "
            f"({reason}); is it the URL of the server's HTTP/WebSocket port?"
        )
    return None
