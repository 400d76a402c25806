"""Scenarios as data: the YAML schema, its validation and the catalogue.

A scenario file names its stack, the mock's behaviour, the toxics and when they apply, what
each group of simulated clients does, and the checks that must hold. Loading is pure (text in,
frozen models out); every error names the file, the line and the field::

    scenarios/catalogue/cancel.yaml:14: clients[0].actions[0].do: Input should be 'cancel', ...

Errors (one root, ``ScenarioError``)::

    ScenarioError
    ├── ScenarioFileError      a file that is not valid YAML or not a valid scenario
    ├── CatalogueError         several invalid files of a catalogue (one ScenarioFileError each)
    └── UnknownScenarioError   a name or pattern that matches no scenario of the catalogue
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scenarios.errors import HarnessError
from scenarios.profiles.schema import Capability
from scenarios.yamlfile import DataFileError, load_located, read_text, validate

__all__ = [
    "CATALOGUE_DIR",
    "BrowserPageSpec",
    "CatalogueError",
    "Check",
    "ClientAction",
    "ClientGroup",
    "MockSpec",
    "Scenario",
    "ScenarioError",
    "ScenarioFileError",
    "ServerEvent",
    "StackModel",
    "ToxicSpec",
    "UnknownScenarioError",
    "load_catalogue",
    "load_scenario_file",
    "parse_scenario",
    "select_scenarios",
]

CATALOGUE_DIR = Path(__file__).with_name("catalogue")

# "default": the target profile's own transport; the others are the reference HTTP stream API
# of docs/protocol.md (a v1 target with http_api).
ClientTransport = Literal["default", "sse", "blocking", "polling"]
TargetName = Literal["reference", "naive"]
Expectation = Literal["pass", "fail"]
ProxyName = Literal["upstream", "downstream"]
ToxicType = Literal[
    "latency", "bandwidth", "slow_close", "timeout", "reset_peer", "slicer", "limit_data", "noop"
]

# Attributes of each Toxiproxy toxic type (TOXIPROXY.md); anything else is a typo.
TOXIC_ATTRIBUTES: dict[str, frozenset[str]] = {
    "latency": frozenset({"latency", "jitter"}),
    "bandwidth": frozenset({"rate"}),
    "slow_close": frozenset({"delay"}),
    "timeout": frozenset({"timeout"}),
    "reset_peer": frozenset({"timeout"}),
    "slicer": frozenset({"average_size", "size_variation", "delay"}),
    "limit_data": frozenset({"bytes"}),
    "noop": frozenset(),
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class ScenarioError(HarnessError):
    """Root of the errors of scenario loading and selection."""


class ScenarioFileError(ScenarioError, DataFileError):
    """A scenario file that cannot be used; ``problems`` lists every (line, field, message)."""


class CatalogueError(ScenarioError):
    """Several scenario files of a catalogue are invalid; ``errors`` has one per file."""

    def __init__(self, errors: Sequence[ScenarioFileError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(line for error in self.errors for line in error.lines()))


class UnknownScenarioError(ScenarioError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(
            f"unknown scenario {name!r}{hint}; 'streamharness list' shows the {len(known)} known"
        )


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StackModel(_Model):
    """Which pieces stand between the clients and the mock (docs/architecture.md)."""

    nginx: bool = False
    nginx_read_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    upstream_proxy: bool = False
    downstream_proxy: bool = False
    # Reference server processes behind nginx, round-robin (each new connection goes to the
    # next one), and where they keep their streams: each in its own memory, or a private
    # redis-server they share.
    server_workers: int = Field(default=1, ge=1, le=8)
    store: Literal["memory", "redis"] = "memory"
    # Settings of the reference server, without the STREAMHARNESS_SERVER_ prefix.
    server_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("server_env", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML reads `HEARTBEAT_INTERVAL_S: 0.5` as a float; the environment only holds strings.
        if isinstance(value, Mapping):
            return {
                str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _workers_behind_nginx(self) -> StackModel:
        if self.server_workers > 1 and not self.nginx:
            raise ValueError("server_workers > 1 needs nginx: true (nginx balances the workers)")
        if self.server_workers > 1 and self.downstream_proxy:
            raise ValueError(
                "the downstream proxy stands in front of one server: with server_workers > 1 "
                "use the upstream proxy"
            )
        return self

    @property
    def several_workers(self) -> bool:
        """The stack runs more than one worker or a shared store (the reference server)."""
        return self.server_workers > 1 or self.store != "memory"


class MockSpec(_Model):
    """How the mock answers: its profile, the model the clients ask for, and rules.

    ``tokens``, ``ttft_ms``, ``itl_ms``, ``jitter_ms`` and ``tokens_per_chunk`` apply to every
    request (a catch-all rule, and defaults merged into each of ``rules``); ``rules`` are
    posted as they are to the mock's rules API (``POST /_mock/rules``), in order, so their
    shape is mockllm's (``{match: {model, prompt, nth}, times, respond: {...}}``).
    """

    profile: Literal["instant", "fast", "realistic"] = "instant"
    model: str = "mock-instant"
    tokens: int | None = Field(default=None, ge=0)
    ttft_ms: float | None = Field(default=None, ge=0)
    itl_ms: float | None = Field(default=None, ge=0)
    jitter_ms: float | None = Field(default=None, ge=0)
    tokens_per_chunk: int | None = Field(default=None, ge=1)
    rules: list[dict[str, Any]] = Field(default_factory=list)

    def defaults(self) -> dict[str, Any]:
        keys = ("tokens", "ttft_ms", "itl_ms", "jitter_ms", "tokens_per_chunk")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}

    def rules_to_post(self, scope: str | None = None) -> list[dict[str, Any]]:
        """The scenario's rules with the defaults merged in, then the catch-all rule.

        ``scope``: a text every prompt of the run contains (the scenario's name). Rules that
        match no prompt of their own are limited to prompts with it, so a request a server
        still makes for an earlier scenario cannot use up a rule (``nth: 1``) of this one.
        """
        defaults = self.defaults()
        out = []
        for rule in self.rules:
            merged = dict(rule)
            merged["respond"] = {**defaults, **(rule.get("respond") or {})}
            match = dict(merged.get("match") or {})
            if scope is not None and "prompt" not in match:
                match["prompt"] = re.escape(scope)
                merged["match"] = match
            out.append(merged)
        if defaults:
            out.append({"id": "scenario-defaults", "respond": defaults})
        return out


class _Timed(_Model):
    """When something happens: at start (default), after N tokens reached the clients, or after T
    ms. ``jitter_ms`` adds a seeded uniform delay in [0, jitter_ms] so faults land at varied but
    replayable moments."""

    after_tokens: int | None = Field(default=None, ge=1)
    after_ms: int | None = Field(default=None, ge=0)
    jitter_ms: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> _Timed:
        if self.after_tokens is not None and self.after_ms is not None:
            raise ValueError("give at most one of after_tokens and after_ms")
        return self

    @property
    def trigger(self) -> str:
        if self.after_tokens is not None:
            return f"after {self.after_tokens} tokens"
        if self.after_ms is not None:
            return f"after {self.after_ms} ms"
        return "at start"


class ToxicSpec(_Timed):
    """A Toxiproxy toxic on one of the stack's proxies, with its schedule."""

    name: str | None = None
    proxy: ProxyName
    type: ToxicType
    stream: Literal["upstream", "downstream"] = "downstream"
    toxicity: float = Field(default=1.0, ge=0.0, le=1.0)
    attributes: dict[str, int] = Field(default_factory=dict)
    duration_ms: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _known_attributes(self) -> ToxicSpec:
        unknown = sorted(set(self.attributes) - TOXIC_ATTRIBUTES[self.type])
        if unknown:
            allowed = ", ".join(sorted(TOXIC_ATTRIBUTES[self.type])) or "none"
            raise ValueError(
                f"unknown attribute(s) {', '.join(unknown)} for a {self.type} toxic "
                f"(allowed: {allowed})"
            )
        negative = sorted(k for k, v in self.attributes.items() if v < 0)
        if negative:
            raise ValueError(f"attribute(s) {', '.join(negative)} must not be negative")
        return self

    @property
    def toxic_name(self) -> str:
        return self.name or f"{self.type}_{self.stream}"


class ServerEvent(_Timed):
    """Something done to the server under test during the run: a graceful restart (of every
    worker), a restart of the workers' Redis (it keeps nothing: every stream is lost), or
    SIGKILL of one worker (``worker``, 1-based, in nginx's order), which is not restarted."""

    do: Literal["restart_server", "restart_redis", "kill_worker"]
    worker: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _worker_to_kill(self) -> ServerEvent:
        if (self.worker is not None) != (self.do == "kill_worker"):
            raise ValueError("kill_worker takes worker: N (1-based), the other events none")
        return self


class ClientAction(_Model):
    """What a client does once it has received token ``at_token`` (0-based) of a stream:
    cancel it (the protocol's cancel message), leave (the profile's way of going away: v1
    cancels and closes, others close the socket or abort the HTTP response), drop the
    connection (abrupt TCP close, no close frame) and go away, or drop it and come back after
    ``reconnect_after_ms`` to resend the message or resume the stream."""

    at_token: int = Field(ge=0)
    do: Literal["cancel", "leave", "drop", "drop_and_resend", "drop_and_resume"]
    reconnect_after_ms: int = Field(default=0, ge=0)
    # drop_and_resume: prove the stream with its own resume token, or with a wrong one (a
    # guess, someone else's): the server must then refuse and replay nothing.
    token: Literal["own", "wrong"] = "own"

    @model_validator(mode="after")
    def _token_for_resume(self) -> ClientAction:
        if self.token != "own" and self.do != "drop_and_resume":
            raise ValueError("token: wrong goes with do: drop_and_resume")
        return self


class ProbeStep(_Model):
    """One exchange of a protocol probe on a v1 WebSocket: send something, expect something.

    ``send`` is a JSON message whose strings may name what the connection has seen so far:
    ``{session_token}`` (hello's resume token), ``{stream_id}`` and ``{resume_token}`` (of the
    latest ``start``). ``expect`` is met by any message arriving after the send that has those
    fields (nested objects compared as subsets); ``expect_close`` by the server closing with
    that code. ``why`` is the promise in words, for the report.
    """

    why: str
    sleep_ms: int = Field(default=0, ge=0, le=60_000)
    send: dict[str, Any] | None = None
    send_text: str | None = None
    send_bytes: int | None = Field(default=None, ge=1, le=16 * 1024 * 1024)
    repeat: int = Field(default=1, ge=1, le=1000)
    expect: dict[str, Any] | None = None
    expect_close: int | None = None
    within_ms: int = Field(default=3000, gt=0, le=60_000)

    @model_validator(mode="after")
    def _one_send(self) -> ProbeStep:
        sends = [x is not None for x in (self.send, self.send_text, self.send_bytes)]
        if sum(sends) > 1:
            raise ValueError("give one of send, send_text, send_bytes")
        if self.expect is None and self.expect_close is None:
            raise ValueError("give expect or expect_close: what the protocol promises")
        return self


class HttpStep(_Model):
    """One request of an HTTP probe of the reference stream API, and what must come back.

    ``path`` and ``json`` may name ``{stream_id}`` and ``{resume_token}`` of the stream the
    latest ``save: true`` step created. ``sse`` reads an event stream to its end and checks
    its wire format: ``names`` (every event has an ``event:`` name), ``ids`` (a token's
    ``id:`` is its index, the terminal event's is the token count), ``replay`` (what ``start``
    says).
    """

    why: str
    sleep_ms: int = Field(default=0, ge=0, le=60_000)
    method: Literal["GET", "POST", "DELETE"] = "GET"
    path: str
    json_body: Any = Field(default=None, alias="json")
    body_bytes: int | None = Field(default=None, ge=1, le=16 * 1024 * 1024)
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: int
    expect_json: dict[str, Any] | None = None
    # JSON field -> a text its value must contain (e.g. events_url -> "resume_token=")
    expect_in: dict[str, str] = Field(default_factory=dict)
    expect_headers: dict[str, str] = Field(default_factory=dict)
    sse: dict[str, Any] | None = None
    save: bool = False
    within_ms: int = Field(default=5000, gt=0, le=60_000)


class BrowserPageSpec(_Model):
    """How a ``kind: browser`` group's pages behave (docs/scenarios.md, "Browser clients").

    ``client``: which frontend each page runs: ``tutorial`` (the tutorial's React hook on
    ``react-use-websocket``, flaws included), ``v1`` (this project's protocol v1 client), or
    ``auto``: the one that speaks the target's profile (``v1`` for protocol v1, ``tutorial``
    for the tutorial shape). ``render_per_message: false`` gives the tutorial hook a
    ``filter`` that keeps messages out of ``lastMessage``: React then renders tokens in
    batches instead of once per message. ``cpu_slowdown``: Chromium's CPU throttling (4 is a
    mid-range phone), so rendering takes as long as it does on slow devices. ``id_in_url``:
    each page gets its own connection id in its address; false leaves it to the frontend
    (the tutorial's hook then uses its hard-coded ``user-123`` on every page, the v1 client a
    random id per tab).
    """

    client: Literal["auto", "tutorial", "v1"] = "auto"
    id_in_url: bool = True
    render_per_message: bool = True
    cpu_slowdown: float = Field(default=1.0, ge=1.0, le=20.0)


class ClientGroup(_Model):
    """``count`` identical simulated clients, each with its own connection and seeded timing;
    ``kind: browser``: each a Chromium page running a frontend (``page``)."""

    name: str | None = None
    kind: Literal["protocol", "browser"] = "protocol"
    page: BrowserPageSpec = BrowserPageSpec()
    count: int = Field(default=1, ge=1, le=2000)
    # The target profile's transport, or the reference HTTP stream API (needs v1_http).
    transport: ClientTransport = "default"
    # Tools offered with every message (OpenAI's function tools) and the tool_choice: the
    # provider may answer with a tool call, which streams as tool_call fragments.
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    # Talk to the target in another shape it also serves (the reference server's tutorial
    # shape: needs tutorial_shape) instead of the target's profile.
    profile: Literal["tutorial"] | None = None
    messages: int = Field(default=1, ge=1, le=100)
    max_tokens: int | None = Field(default=None, ge=1)
    # Prompt template: {client}, {message} and {word} (a seeded word) are filled in; the default
    # makes every prompt unique so each stream can be matched to its upstream request.
    prompt: str = "{scenario} client {client} message {message}: tell me about {word}"
    # The group starts this long after the run's clock (then its seeded jitter).
    start_after_ms: int = Field(default=0, ge=0)
    start_jitter_ms: int = Field(default=0, ge=0)
    think_ms: int = Field(default=0, ge=0)
    read_delay_ms: float = Field(default=0.0, ge=0)
    # The read delay applies to this many frames, then the client reads at full speed (a
    # reader that pauses: read_delay_ms 4000 with read_delay_frames 1 stops for 4 s once).
    read_delay_frames: int | None = Field(default=None, ge=1)
    # The client's socket receive buffer (bytes, set before connecting): small, so that a slow
    # reader backs up into the server's send queue instead of into kernel memory.
    receive_buffer_bytes: int | None = Field(default=None, ge=1024, le=16 * 1024 * 1024)
    actions: list[ClientAction] = Field(default_factory=list)
    timeout_s: float = Field(default=10.0, gt=0, le=600)
    # What a client does when its connection is lost before the stream ended (a reset, a
    # server restart): nothing, resend the chat on a new connection, or resume the stream.
    on_disconnect: Literal["none", "resend", "resume"] = "none"
    reconnects: int = Field(default=3, ge=0, le=20)
    reconnect_after_ms: int = Field(default=0, ge=0)
    # Error codes after which the client sends its chat again on the same connection with a
    # new id: a new generation, as a client does after the retryable owner_lost (protocol v1
    # WebSocket clients; at most ``reconnects`` times per message).
    resend_after_errors: list[str] = Field(default_factory=list)
    # Send all ``messages`` at once on the one connection instead of one after the other.
    concurrent: bool = False
    # Every client of the group connects with the same client id in the URL (/ws/chat/{id}),
    # as two browser tabs of one user would.
    shared_client_id: bool = False
    # False: the client never answers the server's heartbeat (a dead peer the server must
    # detect and close); needs a protocol with app-level pongs.
    answer_pings: bool = True
    # A protocol probe instead of chats: v1 WebSocket exchanges, or HTTP requests of the
    # reference stream API, each with what the protocol promises comes back.
    probe: list[ProbeStep] = Field(default_factory=list)
    http_probe: list[HttpStep] = Field(default_factory=list)
    # The probe's connection: its Origin header and its bearer token.
    origin: str | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _probe_alone(self) -> ClientGroup:
        if self.probe and self.http_probe:
            raise ValueError("a group probes WebSocket or HTTP, not both")
        if (self.probe or self.http_probe) and (self.actions or self.concurrent):
            raise ValueError("a probe group takes no actions and no concurrent messages")
        return self

    @model_validator(mode="after")
    def _browser_pages(self) -> ClientGroup:
        if self.kind != "browser":
            if self.page != BrowserPageSpec():
                raise ValueError("page: goes with kind: browser")
            return self
        given = [
            name
            for name, off in (
                ("probe", not self.probe),
                ("http_probe", not self.http_probe),
                ("actions", not self.actions),
                ("concurrent", not self.concurrent),
                ("transport", self.transport == "default"),
                ("profile", self.profile is None),
                ("tools", not self.tools),
                ("on_disconnect", self.on_disconnect == "none"),
                ("resend_after_errors", not self.resend_after_errors),
                ("shared_client_id", not self.shared_client_id),
                ("read_delay_ms", not self.read_delay_ms),
                ("receive_buffer_bytes", self.receive_buffer_bytes is None),
                ("answer_pings", self.answer_pings),
            )
            if not off
        ]
        if given:
            raise ValueError(
                f"a browser group's pages do what their frontend does: drop {', '.join(given)} "
                "(faults go in toxics: and events:)"
            )
        return self

    @model_validator(mode="after")
    def _concurrent_alone(self) -> ClientGroup:
        dropping = all(a.do == "drop" for a in self.actions)
        if self.concurrent and (not dropping or self.on_disconnect != "none"):
            raise ValueError("concurrent messages take no actions but drop, and no on_disconnect")
        return self

    @field_validator("prompt")
    @classmethod
    def _prompt_fields(cls, value: str) -> str:
        try:
            value.format(scenario="s", client=0, message=0, word="w")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"bad prompt template ({exc}); use {{scenario}}, {{client}}, {{message}}, {{word}}"
            ) from None
        return value

    @property
    def needs(self) -> frozenset[str]:
        """Capabilities of the target this group's clients rely on."""
        out: set[str] = set()
        if self.transport != "default":
            out.add("v1_http")
        if self.concurrent:
            out.add("several_streams")
        if self.shared_client_id:
            out.add("client_id_in_url")
        if not self.answer_pings:
            out.add("pong")
        if self.probe:
            out.add("v1_protocol")
        if self.profile == "tutorial":
            out.add("tutorial_shape")
        if self.tools:
            out.add("tool_calls")
        if self.http_probe:
            out.add("v1_http")
        if self.on_disconnect == "resume":
            out.add("resume")
        if self.resend_after_errors:
            out.add("error_codes")
        for action in self.actions:
            if action.do == "cancel":
                out.add("cancel_message")
            elif action.do == "drop_and_resume":
                out.add("resume")
                if action.token != "own":
                    out.add("resume_token")
        return frozenset(out)


# ---------------------------------------------------------------------------------- checks


class _Check(_Model):
    # Every check may be limited to some client groups (by name), and may need capabilities of
    # the target beyond its kind's own (``implied_needs``): without them it is not applicable.
    groups: list[str] | None = None
    needs: list[Capability] = Field(default_factory=list)

    implied_needs: ClassVar[frozenset[str]] = frozenset()

    @property
    def all_needs(self) -> frozenset[str]:
        return self.implied_needs | frozenset(self.needs)


EndOutcome = Literal["completed", "cancelled", "error"]


def _completed() -> list[EndOutcome]:
    return ["completed"]


class EveryStreamEnded(_Check):
    check: Literal["every_stream_ended"]
    outcomes: list[EndOutcome] = Field(default_factory=_completed)


class TextMatchesMock(_Check):
    check: Literal["text_matches_mock"]


class IndexesDense(_Check):
    check: Literal["indexes_dense"]
    implied_needs = frozenset({"indexes"})


class UpstreamStoppedAfterCancel(_Check):
    check: Literal["upstream_stopped_after_cancel"]
    within_ms: float = Field(gt=0)


class UpstreamRequests(_Check):
    check: Literal["upstream_requests"]
    # Per stream: how many upstream requests its prompt caused (retries and resends included).
    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)
    status: int | None = None


class Band(_Check):
    stat: Literal["each", "p50", "p95", "max", "min", "mean"] = "each"
    min_ms: float | None = Field(default=None, ge=0)
    max_ms: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _some_bound(self) -> Band:
        if self.min_ms is None and self.max_ms is None:
            raise ValueError("give min_ms, max_ms or both")
        if self.min_ms is not None and self.max_ms is not None and self.min_ms > self.max_ms:
            raise ValueError("min_ms is larger than max_ms")
        return self


class TtftBand(Band):
    check: Literal["ttft"]


class ItlBand(Band):
    check: Literal["itl"]


class E2eBand(Band):
    check: Literal["e2e"]


class CloseCodeSeen(_Check):
    check: Literal["close_code"]
    # One code, or the codes that all mean the same outcome (a server's 1008 close frame
    # arrives, or it cannot reach a peer that stopped reading and the peer sees 1006).
    code: int | list[int]
    streams: Literal["any", "all"] = "any"

    @property
    def codes(self) -> list[int]:
        return self.code if isinstance(self.code, list) else [self.code]


class ErrorCodeSeen(_Check):
    check: Literal["error_code"]
    implied_needs = frozenset({"error_codes"})
    code: str
    retryable: bool | None = None
    streams: Literal["any", "all"] = "any"


class NoLeaks(_Check):
    check: Literal["no_leaks"]
    implied_needs = frozenset({"stats"})
    # Counts of the reference server's /stats that must return to their idle value. Finished
    # streams are kept for resume (``streams``), so they are not a leak; live ones are.
    keys: list[str] = Field(
        default_factory=lambda: [
            "connections",
            "live_streams",
            "readers",
            "active_generations",
            "tasks",
            "upstream_connections",
            "send_queue_bytes",
        ]
    )
    # Allowed excess over the idle baseline.
    slack: int = Field(default=0, ge=0)


class HeartbeatSeen(_Check):
    """While a stream is open, the client never waits longer than ``max_gap_ms`` for a token
    or a heartbeat of the server's own (v1 ``ping``, SSE comment): what keeps a proxy's idle
    timeout from cutting a quiet stream. Protocol-level WebSocket pings do not count."""

    check: Literal["heartbeat"]
    max_gap_ms: float | None = Field(default=None, gt=0)
    # Also within 1.5 x the interval the server announced (v1 hello's heartbeat_interval_ms).
    announced: bool = False
    implied_needs = frozenset({"heartbeat"})

    @model_validator(mode="after")
    def _a_limit(self) -> HeartbeatSeen:
        if self.max_gap_ms is None and not self.announced:
            raise ValueError("give max_gap_ms, announced: true, or both")
        return self


class FinishReasonRelayed(_Check):
    """Each completed stream ends with the finish_reason the provider gave (stop, length)."""

    check: Literal["finish_reason"]
    # Also exactly this one ("length" for answers cut by max_tokens): the provider's alone
    # would not show that max_tokens never reached it.
    equals: str | None = None
    implied_needs = frozenset({"finish_reason"})


class UsageRelayed(_Check):
    """Each completed stream reports the provider's token usage."""

    check: Literal["usage"]
    implied_needs = frozenset({"usage"})


class ProbeAnswered(_Check):
    """Every step of every probe got what the protocol promises."""

    check: Literal["probe"]


class SavedMatchesMock(_Check):
    """Browser pages: the assistant message each page saved in its history is the mock's
    answer, character for character."""

    check: Literal["saved_matches_mock"]


class ShownMatchesReceived(_Check):
    """Browser pages: every text the page showed while streaming is a beginning of what its
    WebSocket received, and what it shows at the end (the saved message, else the last
    streaming text) is all of it."""

    check: Literal["shown_matches_received"]


class StatsBounded(_Check):
    """The peak of a /stats number during the run stays at most ``max`` and, with ``min``,
    reaches at least ``min`` (the bound was tested, not just never approached)."""

    check: Literal["stats_bounded"]
    implied_needs = frozenset({"stats"})
    key: str
    max: float
    min: float | None = None


Check = Annotated[
    EveryStreamEnded
    | TextMatchesMock
    | IndexesDense
    | UpstreamStoppedAfterCancel
    | UpstreamRequests
    | TtftBand
    | ItlBand
    | E2eBand
    | CloseCodeSeen
    | ErrorCodeSeen
    | NoLeaks
    | StatsBounded
    | HeartbeatSeen
    | FinishReasonRelayed
    | UsageRelayed
    | ProbeAnswered
    | SavedMatchesMock
    | ShownMatchesReceived,
    Field(discriminator="check"),
]


class Scenario(_Model):
    name: str
    description: str
    tags: list[str] = Field(default_factory=list)
    # The verdict each built-in target must give where the scenario applies to it.
    expect: dict[TargetName, Expectation] = Field(default_factory=dict)
    # A scenario on several workers sharing Redis: the checks that must fail when the same
    # run keeps streams in each worker's memory (``--store memory``): the bug it catches.
    memory_store_fails: list[str] = Field(default_factory=list)
    # Capabilities of the target the scenario needs beyond what its clients and events imply
    # (see ``all_needs``); against a target without them it is skipped with the reason.
    needs: list[Capability] = Field(default_factory=list)
    stack: StackModel = StackModel()
    mock: MockSpec = MockSpec()
    toxics: list[ToxicSpec] = Field(default_factory=list)
    events: list[ServerEvent] = Field(default_factory=list)
    clients: list[ClientGroup] = Field(min_length=1)
    checks: list[Check] = Field(min_length=1)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lower-case letters, digits, '_' and '-' (e.g. mid_stream_cancel)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for i, toxic in enumerate(self.toxics):
            enabled = (
                self.stack.upstream_proxy
                if toxic.proxy == "upstream"
                else (self.stack.downstream_proxy)
            )
            if not enabled:
                raise ValueError(
                    f"toxics[{i}] uses the {toxic.proxy} proxy but stack.{toxic.proxy}_proxy "
                    "is false"
                )
        names = [t.toxic_name for t in self.toxics if t.proxy == "upstream"]
        names += [t.toxic_name + "@downstream-proxy" for t in self.toxics if t.proxy != "upstream"]
        dupes = sorted({n.split("@")[0] for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"toxic names must be unique per proxy: {', '.join(dupes)}")
        group_names = [g.name for g in self.clients if g.name]
        if len(group_names) != len(set(group_names)):
            raise ValueError("client group names must be unique")
        for i, event in enumerate(self.events):
            if event.do == "restart_redis" and self.stack.store != "redis":
                raise ValueError(f"events[{i}] restarts Redis but stack.store is not redis")
            if event.worker is not None and event.worker > self.stack.server_workers:
                raise ValueError(
                    f"events[{i}] kills worker {event.worker} of {self.stack.server_workers}"
                )
        if self.memory_store_fails and self.stack.store != "redis":
            raise ValueError("memory_store_fails goes with stack.store: redis")
        named = {check.check for check in self.checks}
        for name in self.memory_store_fails:
            if name not in named:
                raise ValueError(
                    f"memory_store_fails names {name!r}, not a check of this scenario "
                    f"({', '.join(sorted(named))})"
                )
        for i, check in enumerate(self.checks):
            for wanted in check.groups or []:
                if wanted not in group_names:
                    raise ValueError(f"checks[{i}] names unknown client group {wanted!r}")
        return self

    @property
    def needs_nginx(self) -> bool:
        return self.stack.nginx

    @property
    def rule_scope(self) -> str | None:
        """The scenario's name when every prompt template names it (see ``rules_to_post``)."""
        if all("{scenario}" in g.prompt for g in self.clients):
            return self.name
        return None

    @property
    def all_needs(self) -> frozenset[str]:
        """Every capability the scenario needs: declared, and implied by its clients and
        events (a cancel action needs a cancel message, a restart a target the harness runs)."""
        out: set[str] = set(self.needs)
        for group in self.clients:
            out |= group.needs
        if self.events:
            out.add("restartable")
        if self.stack.several_workers:
            out.add("several_workers")
        return frozenset(out)

    def on_store(self, store: Literal["memory", "redis"]) -> Scenario:
        """The same scenario with its servers keeping streams in ``store``."""
        if store == self.stack.store:
            return self
        stack = self.stack.model_copy(update={"store": store})
        return self.model_copy(update={"stack": stack})

    def group_name(self, index: int) -> str:
        return self.clients[index].name or f"g{index}"


# ---------------------------------------------------------------------------------- loading


def _clean_check_tags(loc: Sequence[str | int]) -> list[str | int]:
    # The discriminator tag of a check ("ttft" in checks.0.ttft.max_ms) is not a field.
    return [
        part
        for i, part in enumerate(loc)
        if not (
            isinstance(part, str)
            and i >= 2
            and loc[i - 2] == "checks"
            and isinstance(loc[i - 1], int)
        )
    ]


def _check_message(error: Mapping[str, Any]) -> str | None:
    return _unknown_check_message(error) if error["type"] == "union_tag_invalid" else None


def parse_scenario(text: str, path: str = "<string>", expected_name: str | None = None) -> Scenario:
    """Validate one scenario document. Raises ScenarioFileError listing every problem."""
    located = load_located(text, path, ScenarioFileError)
    if not isinstance(located.data, dict):
        raise ScenarioFileError(path, [(1, "", "a scenario file must be a YAML mapping")])
    scenario = validate(
        Scenario,
        located,
        path,
        ScenarioFileError,
        clean=_clean_check_tags,
        message=_check_message,
    )
    if expected_name is not None and scenario.name != expected_name:
        raise ScenarioFileError(
            path,
            [
                (
                    located.lines.get(("name",)),
                    "name",
                    f"must equal the file name {expected_name!r} (got {scenario.name!r})",
                )
            ],
        )
    return scenario


def _unknown_check_message(error: Any) -> str:
    ctx = error.get("ctx") or {}
    tag = ctx.get("tag", "?")
    expected = ctx.get("expected_tags", "")
    return f"unknown check {tag!r} (known: {expected})"


def load_scenario_file(path: Path | str) -> Scenario:
    file = Path(path)
    # Parsing with line numbers is slow (15 ms a file) and a test run loads the catalogue in
    # many modules: a file unchanged since it was parsed gives the same (frozen) model.
    key = _file_key(file)
    if key is not None and (known := _PARSED.get(key)) is not None:
        return known
    text = read_text(file, ScenarioFileError)
    scenario = parse_scenario(text, str(file), expected_name=file.stem)
    if key is not None:
        _PARSED[key] = scenario
    return scenario


def _file_key(file: Path) -> tuple[str, int, int] | None:
    """Where a file is and which version of it (None when it cannot be read: read_text says why)."""
    try:
        stat = file.stat()
    except OSError:
        return None
    return (str(file.resolve()), stat.st_mtime_ns, stat.st_size)


_PARSED: dict[tuple[str, int, int], Scenario] = {}


def load_catalogue(directory: Path | str | None = None) -> list[Scenario]:
    """Every ``*.yaml`` scenario of a directory, sorted by name; all files' errors at once."""
    folder = Path(directory) if directory is not None else CATALOGUE_DIR
    scenarios: list[Scenario] = []
    problems: list[ScenarioFileError] = []
    for file in sorted(folder.glob("*.yaml")):
        try:
            scenarios.append(load_scenario_file(file))
        except ScenarioFileError as exc:
            problems.append(exc)
    if problems:
        raise problems[0] if len(problems) == 1 else CatalogueError(problems)
    return sorted(scenarios, key=lambda s: s.name)


def select_scenarios(scenarios: Iterable[Scenario], patterns: Sequence[str]) -> list[Scenario]:
    """Scenarios whose name or a tag matches one of the glob ``patterns`` (all when empty).

    A pattern that matches nothing is an error, so a typo never turns into an empty, green run.
    """
    catalogue = list(scenarios)
    if not patterns:
        return catalogue
    chosen: dict[str, Scenario] = {}
    for pattern in patterns:
        matched = [
            s
            for s in catalogue
            if fnmatch.fnmatchcase(s.name, pattern) or any(t == pattern for t in s.tags)
        ]
        if not matched:
            raise UnknownScenarioError(pattern, [s.name for s in catalogue])
        for s in matched:
            chosen.setdefault(s.name, s)
    return [s for s in catalogue if s.name in chosen]
