"""``streamharness proxy list|inspect|create|delete|toggle|toxic ...``: toxiproxy-cli's commands.

The same commands, flags and aliases as Toxiproxy's own ``toxiproxy-cli`` (``cmd/cli``), against
the embedded server or any real Toxiproxy::

    streamharness proxy create -l 127.0.0.1:9001 -u 127.0.0.1:9000 llm
    streamharness proxy toxic add -t latency -a latency=100 -a jitter=10 -n slow llm
    streamharness proxy list
    streamharness proxy inspect llm
    streamharness proxy toxic remove -n slow llm

The server is ``--api URL`` (toxiproxy-cli's ``--host``), else ``TOXIPROXY_URL``, else
``http://127.0.0.1:8474``. A usage error is one line and exit status 2 (the shared
:class:`~mockllm.cliargs.CommandParser`); an error the API answers, or no answer at all, is one
line and exit status 1. The tables are built by pure functions (:func:`format_list`,
:func:`format_inspect`) from the client's :class:`ProxyInfo`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Final

from mockllm.cliargs import CommandParser
from scenarios.faultproxy.client import ProxyInfo, ToxicInfo, ToxiproxyClient, server_from_env
from scenarios.faultproxy.errors import FaultProxyError, ServerUnavailable

__all__ = ["COMMANDS", "DEFAULT_API", "format_inspect", "format_list", "main"]

PROG: Final = "streamharness proxy"
DEFAULT_API: Final = "http://127.0.0.1:8474"
#: The first words that make ``streamharness proxy`` a control command rather than the server.
COMMANDS: Final = frozenset(
    {"list", "l", "li", "ls", "inspect", "i", "ins", "create", "c", "new"}
    | {"delete", "d", "toggle", "tog", "toxic", "t"}
)


def _attribute(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    try:
        number = int(value)
    except ValueError:
        number = None
    if not sep or not key or number is None:
        raise argparse.ArgumentTypeError(f"expected KEY=INTEGER such as latency=100, got {text!r}")
    return key, number


def _toxicity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


_EXAMPLES = """examples:
  streamharness proxy create -l 127.0.0.1:9001 -u 127.0.0.1:9000 llm
  streamharness proxy toxic add -t latency -a latency=100 -a jitter=10 llm
  streamharness proxy toxic add -t reset_peer -a timeout=500 -u --toxicity 0.5 -n flaky llm
  streamharness proxy list
  streamharness proxy inspect llm
  streamharness proxy toxic remove -n latency_downstream llm
  streamharness proxy serve --port 8474     (or no command at all: start the server)
"""


def build_parser() -> CommandParser:
    api = CommandParser(add_help=False)
    api.add_argument(
        "--api",
        metavar="URL",
        help=f"Toxiproxy API to talk to (default $TOXIPROXY_URL, else {DEFAULT_API})",
    )
    parser = CommandParser(
        prog=PROG,
        description="Drive a Toxiproxy API (the embedded one or a real Toxiproxy) in the "
        "habits of toxiproxy-cli; 'streamharness proxy serve --help' for the server.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", aliases=["l", "li", "ls"], parents=[api], help="list all proxies")
    inspect = commands.add_parser(
        "inspect", aliases=["i", "ins"], parents=[api], help="show one proxy and its toxics"
    )
    inspect.add_argument("proxy", metavar="PROXY", help="proxy name")
    create = commands.add_parser(
        "create", aliases=["c", "new"], parents=[api], help="create a proxy"
    )
    create.add_argument(
        "-l", "--listen", required=True, help="address the proxy listens on (HOST:PORT)"
    )
    create.add_argument(
        "-u", "--upstream", required=True, help="address it forwards to (HOST:PORT)"
    )
    create.add_argument("name", metavar="NAME", help="proxy name")
    for name, aliases, text in (
        ("delete", ["d"], "delete a proxy"),
        ("toggle", ["tog"], "enable a disabled proxy, disable an enabled one"),
    ):
        sub = commands.add_parser(name, aliases=aliases, parents=[api], help=text)
        sub.add_argument("name", metavar="NAME", help="proxy name")
    toxic = commands.add_parser("toxic", aliases=["t"], help="add, update or remove a toxic")
    toxics = toxic.add_subparsers(dest="toxic_command", required=True, metavar="COMMAND")
    add = toxics.add_parser("add", aliases=["a"], parents=[api], help="add a toxic")
    add.add_argument("-t", "--type", required=True, help="toxic type (latency, bandwidth, ...)")
    update = toxics.add_parser("update", aliases=["u"], parents=[api], help="change a toxic")
    remove = toxics.add_parser(
        "remove", aliases=["r", "delete", "d"], parents=[api], help="remove a toxic"
    )
    for sub in (add, update, remove):
        sub.add_argument(
            "-n",
            "--toxicName",
            "--name",
            dest="toxic_name",
            required=sub is not add,
            metavar="NAME",
            help="toxic name" + (" (default TYPE_STREAM)" if sub is add else ""),
        )
    for sub in (add, update):
        sub.add_argument(
            "-a",
            "--attribute",
            type=_attribute,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="toxic attribute, an integer; repeat for several (-a latency=100 -a jitter=10)",
        )
        sub.add_argument(
            "--toxicity",
            "--tox",
            type=_toxicity,
            metavar="X",
            help="share of connections the toxic applies to, 0 to 1"
            + (" (default 1)" if sub is add else ""),
        )
    stream = add.add_mutually_exclusive_group()
    stream.add_argument(
        "-u", "--upstream", action="store_true", help="on data from the client to the upstream"
    )
    stream.add_argument(
        "-d", "--downstream", action="store_true", help="on data back to the client (default)"
    )
    for sub in (add, update, remove):
        sub.add_argument("proxy", metavar="PROXY", help="proxy name")
    return parser


# -- output ----------------------------------------------------------------------------------


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("=" * width for width in widths))
    return lines


def _enabled(proxy: ProxyInfo) -> str:
    return "enabled" if proxy.enabled else "disabled"


def format_list(proxies: Sequence[ProxyInfo]) -> str:
    """toxiproxy-cli's ``list``: one row per proxy, by name, then a hint."""
    header = ["Name", "Listen", "Upstream", "Enabled", "Toxics"]
    if not proxies:
        return "no proxies\n\nHint: create a proxy with `streamharness proxy create`\n"
    rows = [header] + [
        [p.name, p.listen, p.upstream, _enabled(p), str(len(p.toxics)) if p.toxics else "None"]
        for p in sorted(proxies, key=lambda p: p.name)
    ]
    lines = _table(rows)
    lines += ["", "Hint: inspect toxics with `streamharness proxy inspect <proxyName>`"]
    return "\n".join(lines) + "\n"


def _toxic_line(toxic: ToxicInfo) -> list[str]:
    attributes = " ".join(f"{k}={v}" for k, v in sorted(toxic.attributes.items()))
    return [
        f"{toxic.name}:",
        f"type={toxic.type}",
        f"stream={toxic.stream}",
        f"toxicity={toxic.toxicity:.2f}",
        f"attributes=[ {attributes} ]" if attributes else "attributes=[ ]",
    ]


def format_inspect(proxy: ProxyInfo) -> str:
    """toxiproxy-cli's ``inspect``: the proxy, then its toxics by stream."""
    lines = [
        f"Name: {proxy.name}  Listen: {proxy.listen}  Upstream: {proxy.upstream}  "
        f"{_enabled(proxy)}",
        "=" * 70,
    ]
    if not proxy.toxics:
        lines.append("Proxy has no toxics enabled.")
    for stream in ("upstream", "downstream"):
        if not proxy.toxics:
            break
        toxics = [t for t in proxy.toxics if t.stream == stream]
        if stream == "downstream":
            lines.append("")
        lines.append(f"{stream.capitalize()} toxics:")
        if not toxics:
            lines.append(f"Proxy has no {stream.capitalize()} toxics enabled.")
            continue
        rows = [_toxic_line(t) for t in toxics]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    lines += ["", "Hint: add a toxic with `streamharness proxy toxic add`"]
    return "\n".join(lines) + "\n"


# -- commands --------------------------------------------------------------------------------


def _api_url(given: str | None) -> str:
    return (given or server_from_env().url or DEFAULT_API).rstrip("/")


def _doing(args: argparse.Namespace) -> str:
    """What the command was doing, for its error line (toxiproxy-cli's "Failed to ...")."""
    command, sub = args.command, getattr(args, "toxic_command", None)
    if command in ("list", "l", "li", "ls"):
        return "cannot list proxies"
    if command in ("inspect", "i", "ins"):
        return f"cannot inspect proxy {args.proxy!r}"
    if command in ("create", "c", "new", "delete", "d", "toggle", "tog"):
        verb = {"c": "create", "new": "create", "d": "delete", "tog": "toggle"}.get(
            command, command
        )
        return f"cannot {verb} proxy {args.name!r}"
    if sub in ("add", "a"):
        return f"cannot add a {args.type} toxic to proxy {args.proxy!r}"
    verb = "update" if sub in ("update", "u") else "remove"
    return f"cannot {verb} toxic {args.toxic_name!r} of proxy {args.proxy!r}"


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def _unreachable(exc: ServerUnavailable) -> str:
    """The reason of a failed connection in a few words ("Connection refused")."""
    found = _ERRNO.search(str(exc))
    if found:
        return found[1].strip()
    return "timed out" if str(exc).endswith("timed out") else str(exc)


def _run(args: argparse.Namespace, client: ToxiproxyClient) -> str:
    command = args.command
    if command in ("list", "l", "li", "ls"):
        return format_list(list(client.proxies().values()))
    if command in ("inspect", "i", "ins"):
        return format_inspect(client.get_proxy(args.proxy))
    if command in ("create", "c", "new"):
        created = client.create_proxy(args.name, upstream=args.upstream, listen=args.listen)
        return f"Created new proxy {created.name} (listening on {created.listen})\n"
    if command in ("delete", "d"):
        client.delete_proxy(args.name)
        return f"Deleted proxy {args.name}\n"
    if command in ("toggle", "tog"):
        proxy = client.get_proxy(args.name)
        toggled = client.update_proxy(args.name, enabled=not proxy.enabled)
        return f"Proxy {toggled.name} is now {_enabled(toggled)}\n"
    sub = args.toxic_command
    if sub in ("add", "a"):
        toxic = client.add_toxic(
            args.proxy,
            args.type,
            name=args.toxic_name,
            stream="upstream" if args.upstream else "downstream",
            toxicity=1.0 if args.toxicity is None else args.toxicity,
            attributes=dict(args.attribute),
        )
        return f"Added {toxic.stream} {toxic.type} toxic '{toxic.name}' on proxy '{args.proxy}'\n"
    if sub in ("update", "u"):
        toxic = client.update_toxic(
            args.proxy,
            args.toxic_name,
            attributes=dict(args.attribute) if args.attribute else None,
            toxicity=args.toxicity,
        )
        return f"Updated toxic '{toxic.name}' on proxy '{args.proxy}'\n"
    client.remove_toxic(args.proxy, args.toxic_name)
    return f"Removed toxic '{args.toxic_name}' on proxy '{args.proxy}'\n"


def main(argv: Sequence[str]) -> int:
    """Run one control command; exit status 0, 1 (the API refused or did not answer) or 2."""
    args = build_parser().parse_args(argv)
    url = _api_url(args.api)
    try:
        client = ToxiproxyClient(url)
    except ValueError:
        print(
            f"{PROG}: error: --api must be http://HOST:PORT, got {url!r} (see --help)",
            file=sys.stderr,
        )
        return 2
    try:
        sys.stdout.write(_run(args, client))
    except ServerUnavailable as exc:
        print(
            f"{PROG}: error: {_doing(args)}: no Toxiproxy API answers at {url} "
            f"({_unreachable(exc)}); start one with 'streamharness proxy', or name it with "
            "--api URL or TOXIPROXY_URL",
            file=sys.stderr,
        )
        return 1
    except FaultProxyError as exc:
        message = getattr(exc, "message", str(exc))
        print(f"{PROG}: error: {_doing(args)}: {message}", file=sys.stderr)
        return 1
    return 0
