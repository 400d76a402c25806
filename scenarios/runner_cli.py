"""``streamharness run | list | replay``: the scenario suite from the command line.

- ``run [NAME|PATTERN|TAG ...]``: run scenarios (all by default) against the reference stack
  or ``--target naive`` or ``--target URL``; a live progress line, then a table; each failure
  prints its seed and the exact replay command; JSON, JUnit XML, text and HTML reports go to a
  new ``streamharness-reports/<timestamp>/`` (``--report DIR`` elsewhere, ``--no-report``
  none), and the HTML report's path is the last line printed. Exit code 0 when every run
  passed (skips allowed), 1 when one failed or errored, 2 for bad usage (unknown scenario,
  invalid scenario file, unreachable target).
- ``list``: the catalogue with what each scenario expects of each target.
- ``replay SEED SCENARIO``: run one scenario again with the same seed: same fault schedule,
  same mock timing, same client timing.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from mockllm.cliargs import CommandParser
from reference_server.providers import PROVIDER_NAMES
from scenarios import model
from scenarios.argtypes import positive_int
from scenarios.preflight import preflight, provider_url
from scenarios.profiles import ProfileError, builtin_names, load_profile
from scenarios.report import (
    RunSummary,
    ScenarioResult,
    render_table,
    summarise_failures,
    write_reports,
)
from scenarios.reportdir import add_report_options, chosen_report_dir
from scenarios.runner import RunOptions, browser_profile_unmet, replay_command, run_scenario
from scenarios.seeds import MAX_SEED, new_root_seed, repetition_seed
from scenarios.targets import resolve_target, unmet

__all__ = ["list_main", "replay_main", "run_main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Where the provider listens for a URL target unless --mock-port says otherwise.
DEFAULT_PROVIDER_PORT = 9800


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}")
    return value


def _target(text: str) -> str:
    if text in ("reference", "naive") or text.split("://", 1)[0] in ("http", "https", "ws", "wss"):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r}: use 'reference', 'naive' or the URL of a running server (ws://host:port)"
    )


def _add_patterns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "patterns",
        nargs="*",
        metavar="NAME|PATTERN|TAG",
        help="scenario names, globs (e.g. 'upstream_*') or tags; default: all",
    )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        type=_target,
        default="reference",
        help="server under test: reference (default), naive, or the URL of a running server",
    )
    parser.add_argument(
        "--target-profile",
        default=None,
        metavar="NAME|FILE",
        help="how to talk to the target: a built-in profile ("
        + ", ".join(builtin_names())
        + ") or a profile YAML file; default: the built-in target's own, v1 for a URL",
    )
    parser.add_argument(
        "--target-model",
        default=None,
        metavar="NAME",
        help="the model name clients ask the target for (default: the scenario's; a gateway "
        "such as LiteLLM wants one it routes)",
    )
    parser.add_argument(
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header for every request to the target, e.g. 'Authorization: Bearer KEY' "
        "(repeatable)",
    )
    parser.add_argument(
        "--catalogue",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of scenario files (default: the built-in catalogue)",
    )
    parser.add_argument(
        "--file",
        dest="files",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="also load this scenario file (repeatable)",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    add_report_options(parser)
    parser.add_argument(
        "--logs",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep each process's log under this directory (default: a temporary one)",
    )
    parser.add_argument(
        "--toxiproxy-url",
        default=os.environ.get("TOXIPROXY_URL"),
        metavar="URL",
        help="use this Toxiproxy server instead of the embedded fault proxy "
        "(default: $TOXIPROXY_URL)",
    )
    parser.add_argument(
        "--nginx", default=None, metavar="PATH", help="nginx binary (default: found on PATH)"
    )
    parser.add_argument(
        "--store",
        choices=("memory", "redis"),
        default=None,
        help="where the reference server keeps its streams, whatever the scenarios say "
        "(memory makes the several-worker scenarios fail: the bug they catch)",
    )
    parser.add_argument(
        "--provider",
        choices=PROVIDER_NAMES,
        default="openai",
        help="the API the reference server speaks to the mock: OpenAI chat (default), "
        "Anthropic Messages or Ollama's /api/chat",
    )
    parser.add_argument(
        "--mock-port",
        type=int,
        default=None,
        metavar="PORT",
        help="the provider's port: your server's OpenAI base URL is http://127.0.0.1:PORT/v1 "
        f"(default for a --target URL: {DEFAULT_PROVIDER_PORT}; else a free port)",
    )
    parser.add_argument(
        "--mock-model",
        dest="mock_models",
        action="append",
        default=[],
        metavar="NAME",
        help="the model names the mock answers (repeatable; default: any name)",
    )
    parser.add_argument(
        "--expectations",
        action="store_true",
        help="exit 0 when every verdict is the one the scenario expects of this target "
        "(e.g. the naive server failing where it should), instead of when every run passed",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line")


def _load(args: argparse.Namespace, err: TextIO) -> list[model.Scenario] | None:
    try:
        catalogue = model.load_catalogue(args.catalogue)
        extra = [model.load_scenario_file(path) for path in args.files]
    except model.ScenarioError as exc:
        print(f"streamharness: invalid scenario file:\n{exc}", file=err)
        return None
    names = {s.name for s in extra}
    return sorted([s for s in catalogue if s.name not in names] + extra, key=lambda s: s.name)


class Progress:
    """One status line, rewritten in place on a terminal; plain lines otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.prefix = ""
        self._last = 0.0
        self._width = 0

    def start(self, index: int, total: int, name: str, seed: int) -> None:
        self.prefix = f"[{index}/{total}] {name} (seed {seed})"
        self.update("starting the stack")

    def update(self, message: str) -> None:
        if not self.enabled or not self.tty:
            return
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        line = f"{self.prefix}: {message}"[:150]
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()

    def done(self, result: ScenarioResult) -> None:
        if not self.enabled:
            return
        # A skip's reason is printed once, in the SKIPPED lines after the table.
        line = f"{self.prefix}: {result.verdict.upper()} in {result.duration_s:.1f} s"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width) + "\n")
            self._width = 0
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


async def _run_all(
    scenarios: Sequence[model.Scenario],
    root_seed: int,
    repeat: int,
    options: RunOptions,
    progress: Progress,
) -> list[ScenarioResult]:
    results: list[ScenarioResult] = []
    total = len(scenarios) * repeat
    n = 0
    for k in range(repeat):
        seed = repetition_seed(root_seed, k)
        for scenario in scenarios:
            n += 1
            progress.start(n, total, scenario.name, seed)
            result = await run_scenario(scenario, seed, options, progress.update)
            progress.done(result)
            results.append(result)
    return results


def _expectations_hint(results: Sequence[ScenarioResult], expectations: bool) -> str:
    """When failures are what the scenarios expect of this target, say how to gate on that."""
    failed = [r for r in results if r.verdict in ("fail", "error")]
    if expectations or not failed or any(r.as_expected is not True for r in failed):
        return ""
    return (
        f"every failure ({len(failed)}) is what the scenarios expect of this target: "
        "add --expectations to exit 0 when verdicts are as expected"
    )


def _exit_code(results: Sequence[ScenarioResult], expectations: bool) -> int:
    if expectations:
        bad = [r for r in results if r.verdict == "error" or r.as_expected is False]
    else:
        bad = [r for r in results if r.verdict in ("fail", "error")]
    return EXIT_FAILED if bad else EXIT_OK


def _options(args: argparse.Namespace, err: TextIO) -> RunOptions | None:
    """The run's options with the target and its profile checked; None (said why) if bad."""
    headers = {}
    for header in args.headers:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            print(f"streamharness: --header {header!r}: use 'Name: value'", file=err)
            return None
        headers[name.strip()] = value.strip()
    options = RunOptions(
        target=args.target,
        profile=args.target_profile,
        target_model=args.target_model,
        headers=headers,
        toxiproxy_url=args.toxiproxy_url,
        nginx_binary=args.nginx,
        store=args.store,
        provider=args.provider,
        log_dir=args.logs,
        mock_port=args.mock_port,
        mock_models=tuple(args.mock_models),
        catalogue=None if args.catalogue is None else str(args.catalogue),
        # A scenario file's name is its scenario's name (model.load_scenario_file checks).
        scenario_files={Path(f).stem: str(f) for f in args.files},
    )
    if options.provider != "openai" and options.target != "reference":
        print(
            f"streamharness: --provider {options.provider} picks the API the reference server "
            f"speaks to the mock; --target {options.target} calls it its own way (the naive "
            "server speaks OpenAI chat only): drop --provider",
            file=err,
        )
        return None
    try:
        target = options.resolve()
    except ProfileError as exc:
        print(f"streamharness: invalid target profile:\n{exc}", file=err)
        return None
    if target.kind != "url":
        return options
    scheme = args.target.split("://", 1)[0]
    websocket = target.profile.transport == "websocket"
    if websocket != scheme.startswith("ws"):
        want = "ws://" if websocket else "http://"
        print(
            f"streamharness: target {args.target} does not fit profile {target.profile.name!r}, "
            f"whose transport is {target.profile.transport}: give a {want} URL, or another "
            "--target-profile",
            file=err,
        )
        return None
    if options.mock_port is None:
        options = dataclasses.replace(options, mock_port=DEFAULT_PROVIDER_PORT)
    return options


def _execute(
    scenarios: Sequence[model.Scenario],
    args: argparse.Namespace,
    seed: int,
    repeat: int,
    command: str,
    out: TextIO,
    err: TextIO,
) -> int:
    options = _options(args, err)
    if options is None:
        return EXIT_USAGE
    target = options.resolve()
    if target.kind == "url":
        problem = _unreachable(args.target)
        if problem:
            print(f"streamharness: {problem}", file=err)
            return EXIT_USAGE
        assert options.mock_port is not None
        print(
            f"provider for your server: {provider_url(options.mock_port)} (its OpenAI base "
            "URL; any model name is answered)",
            file=err,
        )
        print(f"checking {target.describe()} with one message ...", file=err, end=" ")
        err.flush()
        try:
            checked = asyncio.run(preflight(options))
        except KeyboardInterrupt:
            print("\nstreamharness: interrupted; every process was stopped", file=err)
            return EXIT_INTERRUPTED
        if not checked.ok:
            print(f"failed\nstreamharness: {checked.message}", file=err)
            return EXIT_USAGE
        print(f"ok ({checked.message})", file=err)
        options = dataclasses.replace(options, target_stats=checked.stats)
    progress = Progress(err, not args.quiet)
    print(
        f"running {len(scenarios)} scenario(s) x {repeat} against {target.describe()}, seed {seed}",
        file=err,
    )
    started = time.perf_counter()
    try:
        results = asyncio.run(_run_all(scenarios, seed, repeat, options, progress))
    except KeyboardInterrupt:
        print("\nstreamharness: interrupted; every process was stopped", file=err)
        return EXIT_INTERRUPTED
    summary = RunSummary(
        args.target,
        seed,
        tuple(results),
        time.perf_counter() - started,
        command,
        expectations=args.expectations,
    )
    print(render_table(summary), file=out)
    skipped = [r for r in results if r.verdict == "skip"]
    for r in skipped:
        print(f"SKIPPED {r.scenario}: {r.reason}", file=out)
    for block in summarise_failures(results):
        print(block, file=out)
    hint = _expectations_hint(results, args.expectations)
    if hint:
        print(hint, file=out)
    folder = chosen_report_dir(args)
    if folder is not None:
        written = write_reports(summary, folder)
        html = next(p for p in written if p.name == "report.html")
        print(f"reports in {folder}: report.json, junit.xml, report.txt, one text file per run",
              file=out)  # fmt: skip
        print(f"HTML report: {html}", file=out)
    return _exit_code(results, args.expectations)


def _unreachable(target: str) -> str | None:
    """A quick TCP connect to a --target URL, so a typo fails at once with a clear message."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    try:
        with socket.create_connection((host, port), timeout=3.0):
            return None
    except OSError as exc:
        return f"target {target} is unreachable ({host}:{port}: {exc.strerror or exc})"


RUN_EXAMPLES = """\
Examples:
  streamharness run                                 # every scenario, reference stack
  streamharness run 'upstream_*' --repeat 5         # a glob, five seeds each
  streamharness run --target naive                  # the deliberately naive server
  streamharness run --target http://127.0.0.1:8000  # your server (its provider: the mock)
  streamharness run --file my.yaml my_scenario      # a scenario from a file of yours
"""

LIST_EXAMPLES = """\
Examples:
  streamharness list                                # the whole catalogue
  streamharness list cancel -v                      # a tag, with descriptions
  streamharness list --target-profile openai        # what a server with that profile runs
  streamharness list --profiles                     # the built-in target profiles
"""

REPLAY_EXAMPLES = """\
Examples:
  # the line a failure printed: same seed, same faults, same timings
  streamharness replay 1234567 upstream_truncated --target naive
  streamharness replay 42 my_scenario --file my.yaml
"""


def run_main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness run",
        description="Run scenarios against a stack: the reference server (default), the naive "
        "server, or your own server.",
        epilog=RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_patterns(parser)
    _add_target_options(parser)
    parser.add_argument(
        "--seed", type=_seed, default=None, metavar="N", help="root seed (default: random)"
    )
    parser.add_argument(
        "--repeat",
        type=positive_int,
        default=1,
        metavar="K",
        help="run each scenario K times (seeds derived)",
    )
    _add_run_options(parser)
    args = parser.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    catalogue = _load(args, err)
    if catalogue is None:
        return EXIT_USAGE
    try:
        scenarios = model.select_scenarios(catalogue, args.patterns)
    except model.UnknownScenarioError as exc:
        print(f"streamharness: {exc}", file=err)
        return EXIT_USAGE
    seed = args.seed if args.seed is not None else new_root_seed()
    command = "streamharness run " + shlex.join(list(sys.argv[1:] if argv is None else argv))
    return _execute(scenarios, args, seed, args.repeat, command, out, err)


def replay_main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness replay",
        description="Run one scenario again with the seed a failure printed: same faults, "
        "same timings.",
        epilog=REPLAY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "seed", type=_seed, metavar="SEED", help="the seed the failure printed (0-2**63-1)"
    )
    parser.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="the scenario's name (as `streamharness list` shows it); a scenario from a file "
        "needs the same --file",
    )
    _add_target_options(parser)
    _add_run_options(parser)
    args = parser.parse_args(argv)
    err = sys.stderr
    catalogue = _load(args, err)
    if catalogue is None:
        return EXIT_USAGE
    by_name = {s.name: s for s in catalogue}
    if args.scenario not in by_name:
        print(
            f"streamharness: {model.UnknownScenarioError(args.scenario, list(by_name))}", file=err
        )
        return EXIT_USAGE
    options = _options(args, err)
    if options is None:
        return EXIT_USAGE
    command = replay_command(args.seed, args.scenario, options)
    return _execute([by_name[args.scenario]], args, args.seed, 1, command, sys.stdout, err)


def list_main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(
        prog="streamharness list",
        description="List the scenario catalogue, and which scenarios a target's profile can "
        "run; or, with --profiles, the built-in target profiles.",
        epilog=LIST_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_patterns(parser)
    parser.add_argument(
        "--catalogue",
        type=Path,
        default=None,
        metavar="DIR",
        help="list this folder of scenario files instead of the built-in catalogue",
    )
    parser.add_argument(
        "--file",
        dest="files",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also list the scenarios of this file (repeatable)",
    )
    parser.add_argument(
        "--target",
        type=_target,
        default=None,
        help="say which scenarios run against this target (reference, naive or a URL)",
    )
    parser.add_argument(
        "--target-profile",
        default=None,
        metavar="NAME|FILE",
        help="say which scenarios a server with this profile runs, and why others are skipped",
    )
    parser.add_argument("--profiles", action="store_true", help="list the built-in profiles")
    parser.add_argument("-v", "--verbose", action="store_true", help="show descriptions")
    args = parser.parse_args(argv)
    if args.profiles:
        return _list_profiles(args.verbose)
    catalogue = _load(args, sys.stderr)
    if catalogue is None:
        return EXIT_USAGE
    try:
        scenarios = model.select_scenarios(catalogue, args.patterns)
    except model.UnknownScenarioError as exc:
        print(f"streamharness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    target = None
    if args.target is not None or args.target_profile is not None:
        try:
            # No --target: a server of the user's that speaks the profile (a URL target).
            target = resolve_target(args.target or "your server", args.target_profile)
        except ProfileError as exc:
            print(f"streamharness: invalid target profile:\n{exc}", file=sys.stderr)
            return EXIT_USAGE
    width = max(len(s.name) for s in scenarios)
    runs = 0
    for s in scenarios:
        expect = ", ".join(f"{target}: {verdict}" for target, verdict in s.expect.items())
        needs = " [nginx]" if s.needs_nginx else ""
        if any(g.kind == "browser" for g in s.clients):
            needs += " [chromium]"
        if target is None:
            print(f"{s.name.ljust(width)}  {expect}{needs}  ({', '.join(s.tags)})")
        else:
            why = unmet(s.all_needs, target) or browser_profile_unmet(s, target)
            runs += why is None
            print(f"{s.name.ljust(width)}  {'runs' if why is None else 'skipped: ' + why}{needs}")
        if args.verbose:
            print(f"{''.ljust(width)}  {' '.join(s.description.split())}")
    if target is None:
        print(f"{len(scenarios)} scenarios")
    else:
        print(f"{runs} of {len(scenarios)} scenarios run against {target.describe()}")
    return EXIT_OK


def _list_profiles(verbose: bool) -> int:
    names = builtin_names()
    width = max(len(n) for n in names)
    for name in names:
        profile = load_profile(name)
        request = (
            profile.url if profile.transport == "websocket" else f"{profile.method} {profile.url}"
        )
        caps = ", ".join(sorted(profile.capabilities)) or "-"
        print(f"{name.ljust(width)}  {profile.transport:9}  {request}  (can: {caps})")
        if verbose:
            print(f"{''.ljust(width)}  {' '.join(profile.description.split())}")
    print(f"{len(names)} built-in profiles; write your own with 'extends: NAME' (docs/profiles.md)")
    return EXIT_OK
