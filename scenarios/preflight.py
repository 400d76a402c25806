"""Before the first scenario: does the target answer the way its profile says?

One message, a few seconds at most, through the same stack and driver as the scenarios. A
wrong path (403, 404), a frame the profile cannot read, a server that never calls the
provider or never ends a stream stops the run with one message that shows what came back
and what to change, instead of twenty scenarios failing for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from scenarios import model
from scenarios.checks import StreamObservation
from scenarios.profiles import RequestValues, builtin_names
from scenarios.profiles.frames import render_url
from scenarios.report import ScenarioResult
from scenarios.runner import RunOptions, run_scenario
from scenarios.targets import Target

__all__ = ["PreflightResult", "preflight", "provider_url"]

_SCENARIO = model.parse_scenario(
    """\
name: preflight
description: One message to see that the target answers the way its profile says.
mock: {tokens: 6, itl_ms: 2}
clients:
  - prompt: "streamharness preflight {client}: say hello"
    timeout_s: 5
checks:
  - check: every_stream_ended
  - check: text_matches_mock
""",
    "<preflight>",
)


@dataclass(frozen=True)
class PreflightResult:
    ok: bool
    message: str  # what was seen (ok) or what went wrong and what to change
    stats: bool  # the target serves the reference server's /stats counters


_ENDS = {
    "end": "an end frame",
    "idle": "a silence (idle_end_ms)",
    "close": "the connection closing",
    "stop": "an end frame (finish_reason stop)",
}


def provider_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


async def preflight(options: RunOptions) -> PreflightResult:
    target = options.resolve()
    stats = await _has_stats(target.name)
    result = await run_scenario(_SCENARIO, 1, options)
    if result.verdict == "pass":
        (stream,) = result.streams
        how = _ENDS.get(stream.finish_reason or "end", f"finish_reason {stream.finish_reason}")
        return PreflightResult(
            True,
            f"{len(stream.arrivals)} tokens, ended by {how}, {(stream.e2e_s or 0.0) * 1000:.0f} ms",
            stats,
        )
    return PreflightResult(False, _diagnose(result, target, options), stats)


async def _has_stats(url: str) -> bool:
    base = url.rstrip("/")
    if base.startswith("ws"):
        base = "http" + base.removeprefix("ws")
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            response = await http.get(f"{base}/stats")
            data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(data, dict) and "live_streams" in data


def _diagnose(result: ScenarioResult, target: Target, options: RunOptions) -> str:
    profile = target.profile
    # The URL as the check message used it (its one client is g0-0).
    values = RequestValues("", "", (), client_id="g0-0", stream_id="g0-0-m0")
    where = f"{target.name.rstrip('/')}{render_url(profile.url, values)}"
    said = f"profile {profile.name!r} ({profile.transport}"
    said += (
        f", {profile.method} {profile.url})"
        if profile.transport != "websocket"
        else f" {profile.url})"
    )
    if options.profile is None or options.profile in builtin_names():
        fix = (
            f"write a profile file that starts with 'extends: {profile.name}' and changes what "
            "differs, then pass --target-profile FILE"
        )
    else:
        fix = f"edit {options.profile}"
    if result.verdict in ("error", "skip") or not result.streams:
        return f"the one-message check could not run: {result.reason}"
    stream: StreamObservation = result.streams[0]
    upstream = int(result.figures.get("upstream_requests", 0))
    code, message = stream.error_code or "", stream.error_message or ""
    if code.startswith("http_"):
        return (
            f"the target answered HTTP {code.removeprefix('http_')} to {where} as {said}: "
            f"{message}\nIs the path (url:) or the method right for your server? To change "
            f"them, {fix}."
        )
    if code == "connect":
        return f"cannot connect to {where}: {message}"
    if code == "protocol_error":
        return (
            f"the target sent a frame that {said} cannot read: {message}\n"
            "Choose the built-in profile that matches (streamharness list --profiles), or "
            f"{fix} so that its frames: rules read what your server sends."
        )
    if upstream == 0:
        port = options.mock_port
        url = provider_url(port) if port is not None else "the mock's URL"
        return (
            f"the target got one message from {said} but never called the provider "
            f"(the stream: {stream.describe()}). Set your server's OpenAI base URL to {url} "
            "and start it again; if it reads the prompt from elsewhere, change request "
            f"(body:, text: or url:). To do that, {fix}."
        )
    if stream.outcome == "timeout":
        ways = []
        if profile.on_close != "end":
            ways.append("by closing the connection, set on_close: end")
        if profile.idle_end_ms is None:
            ways.append("by a silence, set idle_end_ms")
        hint = (
            f" If your server ends an answer {'; '.join(ways)}. To do that, {fix}."
            if ways
            else f" Is an end frame missing from frames:? To add it, {fix}."
        )
        return (
            f"the target streamed {len(stream.arrivals)} tokens but the stream never ended "
            f"within 5 s as {said} reads it.{hint}"
        )
    return (
        f"one message through {said} did not come back as the provider sent it: "
        f"{result.reason}\nIf the profile reads the wrong field, {fix}."
    )
