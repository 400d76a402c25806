"""``streamharness load`` and ``streamharness bench``.

``load`` runs Locust headless in a subprocess (Locust monkey-patches the interpreter with
gevent; this process stays a plain asyncio/threads program that can start the reference stack),
reads back the exact metrics the Locust master wrote, prints the summary table, writes JSON,
CSV and an HTML report (and Locust's own HTML report beside it) to a new
``streamharness-reports/<timestamp>/`` or ``--report DIR``, and evaluates the CI gates.
While Locust runs, a progress line (elapsed, users, streams, tokens/s, errors, TTFT p50) goes
to stderr: rewritten in place on a terminal, a plain line every 5 s otherwise (``-q``: none).
A ``--target`` is checked before the run (one TCP connect and one HTTP request). After the run
the most frequent reasons streams failed are printed with their counts.
Exit codes: 0 all gates passed, 1 a gate failed (a line ``gate <name> FAILED: ...`` names it) or
every stream failed (error rate 100 %, gates or not), 2 bad arguments or a target that does not
answer, 3 the run itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from loadtests.errors import LoadError as LoadError
from loadtests.errors import MetricsError
from loadtests.gates import GATE_SPECS, Gate, all_passed, evaluate, make_gate
from loadtests.metrics import ERROR_OUTCOMES, LoadMetrics, Slo
from loadtests.options import (
    add_load_arguments,
    locust_args,
    non_negative,
    option,
    positive,
    positive_int,
    share,
)
from loadtests.preflight import target_problem
from loadtests.progress import ProgressLine, Snapshot, error_reasons
from loadtests.report import (
    streams_csv,
    summary_csv,
    summary_table,
    users_over_time,
    write_html_report,
)
from mockllm.childproc import free_port, stop_process

# `as`: also importable from here, where callers found it before loadtests.errors existed.
from mockllm.cliargs import CommandParser
from scenarios.reportdir import add_report_options, chosen_report_dir

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"

USER_CLASSES: dict[str, str] = {
    "ws": "WsV1User",
    "tutorial": "TutorialUser",
    "sse": "SseUser",
    "blocking": "BlockingUser",
    "polling": "PollingUser",
    "openai": "OpenAIUser",
    "profile": "ProfileUser",
}

EXIT_OK, EXIT_GATE_FAILED, EXIT_USAGE, EXIT_RUN_FAILED = 0, 1, 2, 3
# Locust's files in the report folder: its CSVs (locust_stats.csv ...) and its HTML report.
LOCUST_CSV_PREFIX = "locust"
LOCUST_HTML = "locust.html"

_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s?)?$"
)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``2m``, ``1m30s``, ``1h`` -> seconds (positive)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r} (examples: 30, 30s, 2m, 1m30s)"
        )
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = parts.get("h", 0) * 3600 + parts.get("m", 0) * 60 + parts.get("s", 0)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"duration must be positive, got {text!r}")
    return seconds


def parse_or_status(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace | int:
    """Parsed arguments, or the exit status argparse chose (``--help`` 0, bad input 2): the
    CLIs return it rather than exit, so the dispatcher and the tests can call them."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https", "ws", "wss") or not parsed.netloc:
        raise argparse.ArgumentTypeError(
            f"target must be an http(s):// or ws(s):// URL of the server, got {text!r}"
        )
    # Locust wants an http(s) host; WebSocket users turn it back into ws(s).
    return ("http" + text[2:] if parsed.scheme.startswith("ws") else text).rstrip("/")


def _think(text: str) -> tuple[float, float]:
    lo_s, _, hi_s = text.partition(":")
    try:
        lo = float(lo_s)
        hi = float(hi_s) if hi_s else lo
    except ValueError:
        raise argparse.ArgumentTypeError(f"think time is MIN[:MAX] seconds, got {text!r}") from None
    if lo < 0 or hi < lo:
        raise argparse.ArgumentTypeError(f"think time needs 0 <= MIN <= MAX, got {text!r}")
    return lo, hi


_THINK = (option("think_min_s"), option("think_max_s"))


def _add_workload_options(parser: argparse.ArgumentParser) -> None:
    w = parser.add_argument_group("workload")
    add_load_arguments(w)
    # One option here for the table's two (--sh-think-min, --sh-think-max): a range reads
    # better on this command line, and Locust's parser keeps them apart.
    lo, hi = (o.default for o in _THINK)
    w.add_argument(
        "--think-time", type=_think, default=(lo, hi), metavar="MIN[:MAX]",
        help=f"seconds between a user's streams, uniform in [MIN, MAX] (default {lo:g}:{hi:g})",
    )  # fmt: skip


LOAD_EXAMPLES = """\
Examples:
  # the reference stack started for you, 20 WebSocket users for 30 s
  streamharness load --users 20 --duration 30s
  # your server, with CI gates (exit 1 when one fails)
  streamharness load --target http://127.0.0.1:8000 --users 50 --duration 2m \\
      --ttft-p95-ms 600 --itl-p99-ms 50 --max-error-rate 0.01
  # any server a target profile describes, e.g. an OpenAI-compatible SSE endpoint
  streamharness load --target http://127.0.0.1:9000 --target-profile openai --model m
  # a spike of users, 20 % of streams cancelled, no progress line (CI)
  streamharness load --shape spike --cancel-rate 0.2 --duration 1m -q
"""


def _gate_help(name: str) -> str:
    path, direction, unit = GATE_SPECS[name]
    if name == "max-error-rate":
        return "fail (exit 1) when the error rate is above this share, 0-1"
    if name == "min-goodput":
        return "fail (exit 1) when goodput (see the SLO options) is below this share, 0-1"
    metric, stat = path[1].upper(), path[2]
    bound = "above" if direction == "max" else "below"
    return f"fail (exit 1) when the {metric} {stat} is {bound} this many{unit}"


def build_load_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="streamharness load",
        description="Run a headless Locust load test of streaming chats with exact TTFT/ITL/\n"
        "TPOT/E2E metrics and CI gates. Without --target the reference stack is started.\n"
        "A live progress line goes to stderr; exit 0 gates passed, 1 a gate failed or every\n"
        "stream failed, 2 bad arguments or a target that does not answer, 3 the run failed.",
        epilog=LOAD_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--target", type=_url, default=None, metavar="URL",
        help="server URL (http://host:port, or ws://host:port with --target-profile); checked "
        "before the run (default: start the reference stack)",
    )  # fmt: skip
    parser.add_argument(
        "--users", type=positive_int, default=10, metavar="N", help="peak users (default 10)"
    )
    parser.add_argument(
        "--spawn-rate", type=positive, default=None, metavar="N",
        help="users started per second (default: all at once)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=parse_duration, default=30.0, metavar="TIME",
        help="run time, e.g. 30, 30s, 2m, 1m30s (default 30s)",
    )  # fmt: skip
    parser.add_argument(
        "--transport", choices=list(USER_CLASSES), default="ws",
        help="how users talk to the reference server: ws (WebSocket v1), tutorial (its "
        "WebSocket tutorial protocol), sse, blocking, polling; openai: an OpenAI-compatible "
        "provider directly; profile: see --target-profile (default ws)",
    )  # fmt: skip
    parser.add_argument(
        "--target-profile", default=None, metavar="NAME|FILE",
        help="talk to --target through this target profile (docs/profiles.md): any server's "
        "WebSocket, SSE or streamed HTTP shape; implies --transport profile (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--header", dest="headers", action="append", default=[], metavar="'NAME: VALUE'",
        help="with --target-profile: a header of every request (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=positive_int, default=1, metavar="N",
        help="Locust processes generating load, one per core beyond ~30k frames/s (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="no live progress line on stderr (the summary table is still printed)",
    )  # fmt: skip
    where = add_report_options(parser)
    where.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="deprecated: the same as --report"
    )
    parser.add_argument(
        "--mock-profile", default="fast", metavar="NAME",
        help="the mock's timing profile when the reference stack is started (default fast)",
    )  # fmt: skip
    parser.add_argument(
        "--server-workers", type=positive_int, default=1, metavar="N",
        help="without --target: N reference-server workers behind nginx (round-robin), "
        "sharing their streams in Redis; needs nginx and redis-server (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--store", choices=("memory", "redis"), default=None,
        help="without --target: where the workers keep their streams (default: memory for "
        "one worker, redis for several)",
    )  # fmt: skip
    parser.add_argument(
        "--locust-arg", action="append", default=[], metavar="ARG",
        help="extra argument passed to Locust as is (repeatable)",
    )  # fmt: skip
    _add_workload_options(parser)
    g = parser.add_argument_group("gates (exit 1 when one fails; default: none)")
    for name in GATE_SPECS:
        is_share = name in ("max-error-rate", "min-goodput")
        g.add_argument(
            f"--{name}", type=share if is_share else non_negative, default=None,
            metavar="SHARE" if is_share else "MS", help=_gate_help(name),
        )  # fmt: skip
    s = parser.add_argument_group("SLOs for goodput (ms; default: none, goodput = share completed)")
    for metric, what in (("ttft", "TTFT"), ("tpot", "TPOT"), ("e2e", "E2E")):
        s.add_argument(
            f"--slo-{metric}-ms", type=positive, default=None, metavar="MS",
            help=f"a stream counts towards goodput only if its {what} is at most this",
        )  # fmt: skip
    return parser


def _option_value(args: Sequence[str], name: str) -> str | None:
    """The value given to Locust option ``name`` in ``args`` (``--x V`` or ``--x=V``), if any."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def master_port_args(
    processes: int, extra: Sequence[str], pick_port: Callable[[], int] | None = None
) -> list[str]:
    """Where a multi-process (or ``--master``) Locust run's master listens, on a free port.

    Locust's master binds ``tcp://*:5557`` by default and its workers connect to
    127.0.0.1:5557. Two runs at once on one machine then collide: the second master cannot
    bind, and its workers join the FIRST run's master and get that run's users. So each run
    gets its own free port on 127.0.0.1 unless the user chose one (via ``--locust-arg``).
    ``pick_port`` defaults to :func:`free_port`.
    """
    master = processes > 1 or "--master" in extra
    if not master or "--worker" in extra:
        return []
    out: list[str] = []
    if _option_value(extra, "--master-bind-host") is None:
        out += ["--master-bind-host", "127.0.0.1"]
    port = _option_value(extra, "--master-bind-port")
    if port is None:
        # Only the workers' port given (--processes): the master binds that one.
        given = _option_value(extra, "--master-port") if processes > 1 else None
        port = given or str((pick_port or free_port)())
        out += ["--master-bind-port", port]
    # Workers forked by --processes connect to --master-host:--master-port (default :5557).
    if processes > 1:
        if _option_value(extra, "--master-host") is None:
            out += ["--master-host", "127.0.0.1"]
        if _option_value(extra, "--master-port") is None:
            out += ["--master-port", port]
    return out


def locust_command(
    args: argparse.Namespace,
    host: str,
    metrics_out: Path,
    csv_prefix: Path,
    html: Path | None = None,
    progress_out: Path | None = None,
) -> list[str]:
    """The Locust command line for one run (also what the docs show); ``html``: where Locust
    writes its own HTML report; ``progress_out``: where it keeps its progress snapshot."""
    spawn_rate = args.spawn_rate or float(args.users)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", host, "--users", str(args.users), "--spawn-rate", f"{spawn_rate:g}",
        "--run-time", f"{max(1, round(args.duration))}s",
        "--only-summary", "--exit-code-on-error", "0", "--csv", str(csv_prefix),
        "--sh-metrics-out", str(metrics_out), "--sh-quiet", *locust_args(args),
        "--sh-think-min", f"{args.think_time[0]:g}", "--sh-think-max", f"{args.think_time[1]:g}",
    ]  # fmt: skip
    if args.target_profile:
        cmd += ["--sh-target-profile", str(Path(args.target_profile).resolve())
                if Path(args.target_profile).is_file() else args.target_profile]  # fmt: skip
    for header in args.headers:
        cmd += ["--sh-header", header]
    if html is not None:
        cmd += ["--html", str(html)]
    if progress_out is not None:
        cmd += ["--sh-progress-out", str(progress_out)]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    cmd += master_port_args(args.processes, args.locust_arg)
    cmd += list(args.locust_arg)
    cmd.append(USER_CLASSES[args.transport])
    return cmd


def gates_from_args(args: argparse.Namespace) -> list[Gate]:
    gates = []
    for name in GATE_SPECS:
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            gates.append(make_gate(name, value))
    return gates


def slo_from_args(args: argparse.Namespace) -> Slo:
    def s(v: float | None) -> float | None:
        return None if v is None else v / 1000.0

    return Slo(ttft_s=s(args.slo_ttft_ms), tpot_s=s(args.slo_tpot_ms), e2e_s=s(args.slo_e2e_ms))


def run_locust(
    cmd: Sequence[str],
    log_path: Path,
    timeout_s: float,
    on_tick: Callable[[float], None] | None = None,
    tick_s: float = 0.5,
) -> int:
    """Run Locust, its output to ``log_path``; kill it if it overruns ``timeout_s``.
    ``on_tick(elapsed_s)`` is called every ``tick_s`` while it runs (the progress line)."""
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                elapsed = time.monotonic() - started
                if elapsed > timeout_s:
                    stop_process(proc)
                    raise LoadError(f"Locust did not finish within {timeout_s:.0f} s")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    return proc.wait(timeout=min(tick_s, timeout_s - elapsed + 0.01))
                if on_tick is not None:
                    on_tick(time.monotonic() - started)
        except BaseException:
            # Ctrl-C: Locust got the SIGINT too; make sure it is gone before we return.
            stop_process(proc)
            raise


def _progress_printer(path: Path, line: ProgressLine) -> Callable[[float], None]:
    """A tick that prints the latest snapshot Locust wrote to ``path`` (none yet: nothing)."""

    def tick(_elapsed_s: float) -> None:
        try:
            snapshot = Snapshot.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return  # not written yet (Locust still starting), or replaced as we read
        line.update(snapshot)

    return tick


@dataclass
class LoadResult:
    metrics: LoadMetrics
    summary: dict[str, Any]
    gate_lines: list[str]
    passed: bool


def judge(metrics: LoadMetrics, slo: Slo, gates: Sequence[Gate]) -> LoadResult:
    """The run's summary with each gate's verdict in it (``summary["gates"]``)."""
    summary = metrics.summary(slo)
    results = evaluate(gates, summary)
    summary["gates"] = [
        {"name": r.gate.name, "passed": r.passed, "actual": r.actual, "threshold": r.gate.threshold}
        for r in results
    ]
    return LoadResult(metrics, summary, [r.message for r in results], all_passed(results))


def write_outputs(out: Path, result: LoadResult, command: str, locust_cmd: str) -> Path:
    """Every report file of the run in ``out``; returns the HTML report's path. The users over
    time come from the stats history Locust wrote beside them (``--csv``), when it did."""
    out.mkdir(parents=True, exist_ok=True)
    summary = result.summary
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.csv").write_text(summary_csv(summary))
    (out / "streams.csv").write_text(streams_csv(result.metrics.streams))
    history = out / f"{LOCUST_CSV_PREFIX}_stats_history.csv"
    users = users_over_time(history.read_text()) if history.exists() else []
    locust_html = out / LOCUST_HTML
    return write_html_report(
        out,
        result.metrics,
        summary,
        command=command,
        locust_command=locust_cmd,
        users=users,
        locust_report=LOCUST_HTML if locust_html.exists() else None,
    )


def reason_lines(metrics: LoadMetrics, top: int = 5) -> list[str]:
    """Why streams failed, most frequent first (nothing when none did)."""
    reasons = error_reasons(metrics, top)
    if not reasons:
        return []
    errors = sum(1 for s in metrics.streams if s.outcome in ERROR_OUTCOMES)
    lines = [f"errors: {errors} stream(s) failed; most frequent reasons:"]
    lines += [f"  {count:>6}  {reason}" for reason, count in reasons]
    return lines


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_load(
    args: argparse.Namespace, host: str, after_run: Callable[[], None] | None = None
) -> int:
    """One Locust run; its files go to ``args.out`` (a temporary folder with ``--no-report``).
    ``after_run``: called once the figures are printed, before the report lines (which end
    the output)."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = out / "metrics.json"
    progress_path = out / "progress.json"
    for stale in (metrics_path, progress_path):
        stale.unlink(missing_ok=True)
    html = None if args.no_report else out / LOCUST_HTML
    cmd = locust_command(args, host, metrics_path, out / LOCUST_CSV_PREFIX, html, progress_path)
    print(f"load: {args.users} {args.transport} users, shape {args.shape}, "
          f"{args.duration:g} s against {host}", flush=True)  # fmt: skip
    bind_port = _option_value(cmd, "--master-bind-port")
    if bind_port is not None:
        bind_host = _option_value(cmd, "--master-bind-host") or "*"
        print(f"load: Locust master on {bind_host}:{bind_port}", flush=True)
    log_path = out / "locust.log"
    progress = ProgressLine(sys.stderr, args.duration)
    tick = None if args.quiet else _progress_printer(progress_path, progress)
    try:
        code = run_locust(
            cmd, log_path, timeout_s=args.duration + args.stream_timeout + 60, on_tick=tick
        )
    finally:
        progress.finish()
    if not metrics_path.exists():
        print(f"load: Locust exited with {code} and wrote no metrics; its log ({log_path}):\n"
              f"{_tail(log_path)}", file=sys.stderr)  # fmt: skip
        return EXIT_RUN_FAILED
    try:
        metrics = LoadMetrics.from_dict(json.loads(metrics_path.read_text()))
    except (ValueError, MetricsError) as exc:
        print(f"load: unreadable metrics {metrics_path}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    result = judge(metrics, slo_from_args(args), gates_from_args(args))
    print(summary_table(result.summary))
    for line in result.gate_lines:
        print(line)
    for line in reason_lines(metrics):
        print(line)
    if metrics.empty:
        print("load: no stream finished during the run", file=sys.stderr)
    if after_run is not None:
        after_run()
    if not args.no_report:
        report = write_outputs(out, result, args.command_line, shlex.join(cmd))
        print(f"reports in {out}: summary.json, summary.csv, streams.csv, metrics.json, "
              f"Locust's {LOCUST_HTML} and {LOCUST_CSV_PREFIX}_*.csv")  # fmt: skip
        print(f"HTML report: {report}")
    if metrics.error_rate() == 1.0:
        # Gates or not, a run in which no stream succeeded measured nothing about the server.
        print(
            "load: FAILED: every stream that ended was an error (error rate 100%); "
            "the reasons are above",
            file=sys.stderr,
        )
        return EXIT_GATE_FAILED
    return EXIT_OK if result.passed else EXIT_GATE_FAILED


async def _with_stack(args: argparse.Namespace) -> int:
    try:
        from scenarios.stack import Stack, StackSpec
    except ImportError as exc:
        print(f"load: cannot start the reference stack ({exc}); pass --target URL",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    from scenarios.stack import StackError

    workers: int = args.server_workers
    # --directives lets --prompt carry "[[mock ttft_ms=... itl_ms=... tokens=...]]" through
    # the server to the mock, so a load test can choose its own schedule.
    spec = StackSpec(
        target="reference",
        mock_profile=args.mock_profile,
        mock_seed=args.seed,
        mock_args=("--directives",),
        server_workers=workers,
        nginx=workers > 1,
        store=args.store,
    )
    log_dir = args.out / "stack-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        async with Stack(spec, log_dir=log_dir) as stack:
            url = stack.client_http_url
            shape = "" if workers == 1 else f", {workers} workers behind nginx"
            print(f"load: started the reference stack ({url}{shape}, store {args.store}, "
                  f"mock profile {args.mock_profile})")  # fmt: skip
            urls = stack.server_urls
            after = (lambda: _report_workers(urls, args)) if workers > 1 else None
            return await asyncio.to_thread(run_load, args, url, after)
    except StackError as exc:
        print(f"load: the reference stack failed: {exc}; its logs are in {log_dir}",
              file=sys.stderr)  # fmt: skip
        return EXIT_RUN_FAILED


def _report_workers(urls: Sequence[str], args: argparse.Namespace) -> None:
    """Each worker's share of the run, from its own ``/stats``: with round-robin every one
    should have served streams (``workers.json`` in the report folder)."""
    import httpx

    rows: list[dict[str, Any]] = []
    with httpx.Client(timeout=5.0) as http:
        for n, url in enumerate(urls, 1):
            try:
                stats = http.get(f"{url}/stats").json()
                totals = stats["totals"]
                row = {"worker": n, "url": url, "pid": stats["pid"], "store": stats["store"],
                       "streams": totals["streams"], "ws_connections": totals["ws_connections"],
                       "upstream_requests": totals["upstream_requests"]}  # fmt: skip
                print(f"load: worker {n} ({url}, pid {row['pid']}): {row['streams']} streams "
                      f"started, {row['upstream_requests']} upstream requests")  # fmt: skip
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                row = {"worker": n, "url": url, "error": str(exc)}
                print(f"load: worker {n} ({url}): no /stats ({exc})", file=sys.stderr)
            rows.append(row)
    if not args.no_report:
        (args.out / "workers.json").write_text(json.dumps(rows, indent=2))


def _profile_problem(args: argparse.Namespace) -> str | None:
    """Check --target-profile (and what it allows) before anything starts."""
    from scenarios.profiles import ProfileError, load_profile

    try:
        profile = load_profile(args.target_profile)
    except ProfileError as exc:
        return f"invalid target profile:\n{exc}"
    bad = [h for h in args.headers if ":" not in h or not h.partition(":")[0].strip()]
    if bad:
        return f"--header {bad[0]!r}: use 'Name: value'"
    if profile.protocol == "v1":
        if args.headers or profile.url != "/ws/chat/{client_id}":
            return "a v1 profile is played by the ws users: no --header, url /ws/chat/{client_id}"
        args.transport, args.target_profile = "ws", None  # protocol v1 is WsV1User's
        return None
    args.transport = "profile"
    if args.target is None:
        return "--target-profile needs --target (the URL of the server it describes)"
    if args.drop_rate:
        return "--drop-rate needs resume, which --target-profile users do not do"
    if args.cancel_rate and profile.cancel_message is None:
        return f"--cancel-rate needs a cancel message; profile {profile.name!r} declares none"
    return None


def _stack_problem(args: argparse.Namespace) -> str | None:
    """Check --server-workers / --store (and settle the store) before anything starts."""
    if args.target is not None:
        if args.server_workers != 1 or args.store is not None:
            return (
                "--server-workers and --store shape the stack started without --target; "
                "drop them, or drop --target"
            )
        return None
    if args.store is None:
        args.store = "redis" if args.server_workers > 1 else "memory"
    if args.server_workers > 1 and args.store == "memory":
        # Each worker would know only its own streams: a resume that nginx sends to another
        # worker fails. The workers scenarios show that bug; a load run measures the fix.
        return (
            "--server-workers > 1 shares streams through Redis; --store memory would lose "
            "every resume that lands on another worker (use --store redis, or leave it out)"
        )
    from scenarios.stack.nginx import NginxUnavailable, find_nginx
    from scenarios.stack.redis import RedisUnavailable, find_redis

    try:
        if args.server_workers > 1:
            find_nginx()
        if args.store == "redis":
            find_redis()
    except (NginxUnavailable, RedisUnavailable) as exc:
        return f"{exc} (needed by --server-workers {args.server_workers} --store {args.store})"
    return None


def load_main(argv: Sequence[str] | None = None) -> int:
    parser = build_load_parser()
    args = parse_or_status(parser, argv)
    if isinstance(args, int):
        return args
    if args.spawn_rate is None:
        args.spawn_rate = float(args.users)
    problem = None
    if args.target_profile is not None:
        problem = _profile_problem(args)
    elif args.transport == "profile":
        problem = "--transport profile needs --target-profile"
    elif args.headers:
        problem = "--header goes with --target-profile (the reference transports take none)"
    elif args.drop_rate and args.transport not in ("ws", "sse"):
        problem = f"--drop-rate needs a resumable transport (ws or sse), not {args.transport}"
    elif args.cancel_rate and args.transport not in ("ws", "sse", "polling"):
        problem = (
            f"--cancel-rate needs a cancellable transport (ws, sse, polling), not {args.transport}"
        )
    if problem is None:
        problem = _stack_problem(args)
    if problem is None and args.cancel_rate + args.drop_rate > 1:
        problem = "--cancel-rate + --drop-rate must not exceed 1"
    if problem:
        parser.print_usage(sys.stderr)
        print(f"streamharness load: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.out is not None:
        print("streamharness load: --out is deprecated; use --report DIR (the same folder)",
              file=sys.stderr)  # fmt: skip
        args.report = args.out
    args.command_line = "streamharness load " + shlex.join(
        list(sys.argv[1:] if argv is None else argv)
    )
    with contextlib.ExitStack() as cleanup:
        folder = chosen_report_dir(args)
        if folder is None:  # Locust still writes its metrics somewhere: a folder that goes
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sh-load-")))
        args.out = folder
        return _load(args)


def _load(args: argparse.Namespace) -> int:
    try:
        if args.target:
            problem = target_problem(args.target)
            if problem:
                print(f"streamharness load: {problem}", file=sys.stderr)
                return EXIT_USAGE
            return run_load(args, args.target)
        return asyncio.run(_with_stack(args))
    except LoadError as exc:
        print(f"load: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except KeyboardInterrupt:
        print("load: interrupted", file=sys.stderr)
        return 130
