"""What a simulated user does, defined once: the option table and what it generates.

Each row of :data:`OPTIONS` (name, type, default, help) is one ``--sh-<flag>`` option of the
Locust parser (:func:`add_locust_arguments`, the locustfile's ``init_command_line_parser``
listener). Rows marked ``load`` are also ``streamharness load --<flag>``
(:func:`add_load_arguments`), forwarded to Locust as ``--sh-<flag>`` (:func:`locust_args`), and
rows marked ``user`` are the fields of :class:`UserOptions`, read back from Locust's parsed
options by :meth:`UserOptions.from_parsed`. A new workload option is one new row (plus its
typed field in :class:`UserOptions`, which a test keeps in step with the table).

Pure: no Locust, no gevent; ``streamharness load`` imports it in a plain process.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtests.shapes import SHAPE_NAMES
from scenarios.argtypes import positive_int

__all__ = [
    "OPTIONS",
    "Option",
    "UserOptions",
    "add_load_arguments",
    "add_locust_arguments",
    "locust_args",
    "non_negative",
    "option",
    "positive",
    "positive_int",
    "share",
]


# -- argument types: shared by both parsers, so Locust refuses what `streamharness load` refuses


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive(text: str) -> float:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def share(text: str) -> float:
    value = non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a share between 0 and 1, got {text}")
    return value


def header(text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``("Name", "value")``."""
    name, _, value = text.partition(":")
    return name.strip(), value.strip()


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One ``--sh-<flag>`` Locust option; ``type=None`` is an on/off switch."""

    name: str
    type: Callable[[str], Any] | None
    default: Any
    help: str
    flag: str = ""  # "" -> the name with dashes
    load: bool = False  # also `streamharness load --<flag>`
    user: bool = True  # a field of UserOptions (the others steer the Locust run itself)
    repeat: bool = False  # may be given several times; the values are collected in order
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        """Its attribute on Locust's parsed options (``--sh-seed`` -> ``sh_seed``)."""
        return "sh_" + self.cli_flag.replace("-", "_")

    @property
    def load_dest(self) -> str:
        return self.cli_flag.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("prompt", str, "Tell me a story.", "the user message of every stream",
           metavar="TEXT", load=True),
    Option("model", str, "", "model name sent with each request (default: none)",
           metavar="NAME", load=True),
    Option("max_tokens", positive_int, None, "max_tokens of each request (default: none)",
           metavar="N", load=True),
    Option("extra_body", str, "", "JSON object merged into every request", metavar="JSON"),
    Option("think_min_s", non_negative, 0.5, "think time min, s", flag="think-min"),
    Option("think_max_s", non_negative, 2.0, "think time max, s", flag="think-max"),
    Option("cancel_rate", share, 0.0, "share of streams cancelled, 0-1", metavar="SHARE",
           load=True),
    Option("drop_rate", share, 0.0,
           "share of streams whose connection is dropped and the stream resumed, 0-1",
           metavar="SHARE", load=True),
    Option("interrupt_after", positive_int, 3, "tokens before a cancel or drop", metavar="N",
           load=True),
    Option("poll_interval_s", positive, 1.0, "polling period, s", flag="poll-interval",
           metavar="S", load=True),
    Option("stream_timeout_s", positive, 60.0, "per stream, s", flag="stream-timeout",
           metavar="S", load=True),
    Option("seed", int, 0, "seeds every user decision", metavar="N", load=True),
    Option("target_profile", str, "tutorial",
           "ProfileUser: a built-in target profile or a profile file (docs/profiles.md)"),
    Option("headers", header, (),
           "ProfileUser: 'Name: value' header of every request (repeatable)", flag="header",
           repeat=True),
    Option("probe_lag", None, False,
           "bench: token content is the source's send time; record receive lag"),
    Option("user_stamps", None, False,
           "stamp data when the user reads it, not when the kernel received it (the old way, "
           "for comparison; the default uses SO_TIMESTAMPNS where available)"),
    Option("shape", str, "constant",
           "users over the run time: constant, ramp (to the peak over the first half), spike, "
           "soak, sweep (4 plateaus); docs/loadtests.md", choices=SHAPE_NAMES,
           load=True, user=False),
    Option("metrics_out", str, "", "write exact metrics JSON here", user=False),
    Option("worker_metrics_out", str, "",
           "a --worker started on its own: write the exact metrics it shipped to the master "
           "here when it quits (its share of the master's figures)", user=False),
    Option("progress_out", str, "",
           "rewrite a progress snapshot JSON (users, streams, errors, tokens, TTFT p50) here "
           "every second", user=False),
    Option("quiet", None, False, "no summary table at the end", user=False),
)  # fmt: skip

_BY_NAME = {o.name: o for o in OPTIONS}


def option(name: str) -> Option:
    """The row called ``name`` (``KeyError`` for none)."""
    return _BY_NAME[name]


def _help(o: Option) -> str:
    """The row's help with its default, when it has one worth saying."""
    if o.type is None or o.default in (None, "", ()) or "default" in o.help:
        return o.help
    shown = f"{o.default!r}" if isinstance(o.default, str) else _text(o.default)
    return f"{o.help} (default {shown})"


def _add(group: Any, flag: str, o: Option, dest: str | None = None) -> None:
    kwargs: dict[str, Any] = {"help": _help(o)}
    if dest is not None:
        kwargs["dest"] = dest
    if o.type is None:
        kwargs.update(action="store_true", default=o.default)
    else:
        # argparse appends to a copy of a list default; a tuple default could not be appended to.
        default = list(o.default) if o.repeat else o.default
        kwargs.update(type=o.type, default=default)
        if o.repeat:
            kwargs["action"] = "append"
    if o.choices is not None:
        kwargs["choices"] = o.choices
    if o.metavar is not None:
        kwargs["metavar"] = o.metavar
    group.add_argument(flag, **kwargs)


def add_locust_arguments(parser: Any) -> None:
    """Every row as ``--sh-<flag>`` on Locust's parser (configargparse, hence ``Any``)."""
    group = parser.add_argument_group("streamharness")
    for o in OPTIONS:
        _add(group, f"--sh-{o.cli_flag}", o, dest=o.dest)


def add_load_arguments(group: Any) -> None:
    """The ``load`` rows as ``--<flag>`` of ``streamharness load``."""
    for o in OPTIONS:
        if o.load:
            _add(group, f"--{o.cli_flag}", o)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def locust_args(args: argparse.Namespace) -> list[str]:
    """The ``load`` rows' values in ``args`` as Locust arguments (unset ones left out)."""
    out: list[str] = []
    for o in OPTIONS:
        value = getattr(args, o.load_dest) if o.load else None
        if value is None:
            continue
        for one in value if o.repeat else [value]:
            out += [f"--sh-{o.cli_flag}", _text(one)]
    return out


def _parsed_value(o: Option, raw: Any) -> Any:
    if raw is None or (raw == "" and o.type not in (str, None)):
        return o.default
    convert = o.type if o.type not in (str, None) else None
    # Locust's web UI hands over text for options whose default is None or a list.
    if o.repeat:
        return tuple(convert(v) if convert and isinstance(v, str) else v for v in raw)
    return convert(raw) if convert and isinstance(raw, str) else raw


# -- what a user reads ------------------------------------------------------------------------


@dataclass(frozen=True)
class UserOptions:
    """What a simulated user does: one field per ``user`` row of :data:`OPTIONS`, typed here
    for the checker; values and defaults come from the table (:meth:`from_parsed`)."""

    prompt: str
    model: str
    max_tokens: int | None
    extra_body: str
    think_min_s: float
    think_max_s: float
    cancel_rate: float
    drop_rate: float
    interrupt_after: int
    poll_interval_s: float
    stream_timeout_s: float
    seed: int
    target_profile: str
    headers: tuple[tuple[str, str], ...]
    probe_lag: bool
    user_stamps: bool

    @classmethod
    def from_parsed(cls, parsed: Any) -> UserOptions:
        """From Locust's parsed options (``None``: every default)."""
        return cls(
            **{o.name: _parsed_value(o, getattr(parsed, o.dest, None)) for o in OPTIONS if o.user}
        )

    @property
    def kernel_stamps(self) -> bool:
        return not self.user_stamps

    def request_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.model:
            fields["model"] = self.model
        if self.max_tokens:
            fields["max_tokens"] = self.max_tokens
        if self.extra_body:
            fields.update(json.loads(self.extra_body))
        return fields
