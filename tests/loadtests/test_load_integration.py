"""``streamharness load`` end to end: real Locust subprocesses against mockllm + reference server.

The mock's schedule is set per request with an in-prompt directive (the reference server
forwards the prompt untouched): TTFT 200 ms, then one token every 20 ms, 10 tokens. So a
correct measurement shows TTFT ~200 ms, ITL ~20 ms, TPOT ~20 ms and E2E ~380 ms. Bands are
wide because this 2-core machine is shared.
"""

from __future__ import annotations

import csv
import json
import re
import socket
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import LiveStack, start_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROMPT = "[[mock ttft_ms=200 itl_ms=20 tokens=10]] hello"
# For a cancel after token N: the rest of the answer takes 0.7 s, so a cancel that a busy
# machine delays still reaches a stream that is running (10 x 20 ms left it 140 ms).
LONGER = "[[mock ttft_ms=200 itl_ms=40 tokens=20]] hello"


def run_load(
    out: Path, *args: str, timeout: float = 50, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """A load run with its reports in ``out``; ``cwd``: no ``--report``, the default folder
    under ``cwd`` instead (``out`` is then that folder)."""
    where = [] if cwd is not None else ["--report", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "streamharness.cli", "load", *where, "--think-time", "0",
         "--prompt", PROMPT, *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd,
    )  # fmt: skip
    if cwd is not None:
        html = Path(result.stdout.splitlines()[-1].removeprefix("HTML report: "))
        assert html.parent.parent == Path("streamharness-reports"), result.stdout
        out = cwd / html.parent
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return result, summary


def p(summary: dict[str, Any], metric: str, stat: str = "p50") -> float:
    value = summary["metrics_ms"][metric][stat]
    assert value is not None, f"no {metric} samples"
    return float(value)


def streams(out: Path, *, ended: bool = True) -> list[dict[str, str]]:
    """Rows of streams.csv; by default without the streams cut by the end of the run."""
    with (out / "streams.csv").open() as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if r["outcome"] != "unfinished"] if ended else rows


def ended_count(s: dict[str, Any]) -> int:
    return int(s["streams"]) - int(s["outcomes"]["unfinished"])


def test_ws_metrics_match_the_mock_schedule_and_gates_pass(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    r, s = run_load(
        tmp_path, "--target", live_stack.server, "--users", "3", "--duration", "4s",
        "--ttft-p95-ms", "400", "--itl-p99-ms", "120", "--e2e-p99-ms", "900",
        "--max-error-rate", "0", "--slo-ttft-ms", "450", "--min-goodput", "0.9",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["outcomes"]["completed"] >= 6
    assert 190 <= p(s, "ttft") <= 330
    assert 15 <= p(s, "itl") <= 35
    assert 17 <= p(s, "tpot") <= 35
    assert 370 <= p(s, "e2e") <= 600
    assert all(row["tokens"] == "10" for row in streams(tmp_path))
    # every gap pooled, including those of streams the end of the run cut short
    all_rows = streams(tmp_path, ended=False)
    assert s["metrics_ms"]["itl"]["count"] == sum(max(0, int(r["tokens"]) - 1) for r in all_rows)
    for gate in ("ttft-p95-ms", "itl-p99-ms", "e2e-p99-ms", "max-error-rate", "min-goodput"):
        assert f"gate {gate} passed" in r.stdout
    assert "TTFT" in r.stdout and "goodput" in r.stdout
    html = (tmp_path / "report.html").read_text()
    assert 'class="banner pass"' in html and "all 5 gates passed" in html
    assert 'id="fig-over-time-data"' in html and "users (Locust)" in html  # Locust's history
    assert (tmp_path / "plotly.min.js").is_file() and (tmp_path / "locust.html").is_file()
    # Locust's own statistics got one event per stream per metric.
    with (tmp_path / "locust_stats.csv").open() as f:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    assert int(rows[("TTFT", "ws")]["Request Count"]) == s["outcomes"]["completed"]
    assert int(rows[("STREAM", "ws")]["Request Count"]) == ended_count(s)


def test_a_failing_gate_exits_1_and_names_itself(live_stack: LiveStack, tmp_path: Path) -> None:
    r, s = run_load(
        tmp_path, "--target", live_stack.server, "--users", "2", "--duration", "3s",
        # TTFT is 200 ms by the mock's schedule: 50 fails however fast the machine; a token
        # gap of a second passes however busy it is.
        "--ttft-p95-ms", "50", "--itl-p99-ms", "1000",
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "gate ttft-p95-ms FAILED" in r.stdout
    assert "gate itl-p99-ms passed" in r.stdout
    assert s["gates"][0] == {
        "name": "ttft-p95-ms", "passed": False, "actual": s["gates"][0]["actual"], "threshold": 50.0
    }  # fmt: skip


@pytest.mark.parametrize(
    ("transport", "ttft_band"),
    [
        ("sse", (190, 330)),
        ("tutorial", (190, 330)),
        ("polling", (190, 450)),  # first poll that sees a token: up to one interval late
        ("blocking", (370, 600)),  # the whole answer at once: TTFT = E2E
    ],
)
def test_every_transport_is_measured(
    live_stack: LiveStack, tmp_path: Path, transport: str, ttft_band: tuple[float, float]
) -> None:
    r, s = run_load(
        tmp_path, "--target", live_stack.server, "--users", "2", "--duration", "3s",
        "--transport", transport, "--poll-interval", "0.1", "--max-error-rate", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["outcomes"]["completed"] >= 2
    assert ttft_band[0] <= p(s, "ttft") <= ttft_band[1]
    assert 370 <= p(s, "e2e") <= 650
    assert all(row["tokens"] == "10" for row in streams(tmp_path))
    if transport == "blocking":
        assert p(s, "ttft") == p(s, "e2e")


def test_processes_merge_into_one_exact_result(live_stack: LiveStack, tmp_path: Path) -> None:
    r, s = run_load(
        tmp_path, "--target", live_stack.server, "--users", "4", "--duration", "4s",
        "--processes", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    rows = streams(tmp_path)
    # Both workers contributed (their stream ids carry different process tokens)...
    assert ended_count(s) == len(rows) >= 8
    with (tmp_path / "locust_stats.csv").open() as f:
        stats = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    # ...and the master's merged exact metrics saw exactly the streams Locust counted.
    assert int(stats[("STREAM", "ws")]["Request Count"]) == ended_count(s)
    assert int(stats[("TTFT", "ws")]["Request Count"]) == s["outcomes"]["completed"]
    assert 190 <= p(s, "ttft") <= 330


def test_master_and_two_separate_workers_merge_to_the_single_process_percentiles(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    # Locust on several machines, all on 127.0.0.1 here: a --master and two --worker processes
    # started on their own, as on separate load machines.
    from loadtests.cli import LOCUSTFILE
    from loadtests.metrics import ERROR_OUTCOMES, PERCENTILES, ExactHistogram, LoadMetrics
    from mockllm.childproc import free_port

    locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    port = str(free_port())
    master = subprocess.Popen(
        [*locust, "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
         "--headless", "--expect-workers", "2", "--expect-workers-max-wait", "40",
         "-u", "4", "-r", "4", "-t", "4s", "--host", live_stack.server, "--only-summary",
         "--sh-prompt", PROMPT, "--sh-think-min", "0", "--sh-think-max", "0", "--sh-quiet",
         "--sh-metrics-out", str(tmp_path / "master.json"), "WsV1User"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def worker(n: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", port,
             "--sh-worker-metrics-out", str(tmp_path / f"worker{n}.json"), "WsV1User"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    workers = [worker(1), worker(2)]
    procs = [master, *workers]
    try:
        logs = [proc.communicate(timeout=60)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0, 0], "\n---\n".join(logs)

    def load(name: str) -> LoadMetrics:
        return LoadMetrics.from_dict(json.loads((tmp_path / name).read_text()))

    merged, *shares = load("master.json"), load("worker1.json"), load("worker2.json")
    assert all(len(share.streams) >= 4 for share in shares)  # both machines streamed
    # The master holds exactly the streams the workers measured, no more, no fewer...
    rows = Counter(tuple(s.to_row()) for share in shares for s in share.streams)
    assert Counter(tuple(s.to_row()) for s in merged.streams) == rows
    assert merged.outcome_counts()["completed"] >= 8
    # ...and its percentiles are those of one process over every one of those streams: numpy's
    # linear interpolation over the raw values (10 us resolution, so within 5 us), per metric.
    streams = [s for share in shares for s in share.streams]
    raw = {
        "ttft": [
            s.ttft_s for s in streams if s.ttft_s is not None and s.outcome not in ERROR_OUTCOMES
        ],
        "e2e": [s.e2e_s for s in streams if s.e2e_s is not None],
        "tpot": [s.tpot_s for s in streams if s.tpot_s is not None],
    }
    for metric, values in raw.items():
        hist: ExactHistogram = getattr(merged, metric)
        assert hist.count == len(values) >= 8, metric
        single = statistics.quantiles(values, n=100, method="inclusive")
        for q in PERCENTILES:
            got = hist.interpolated_percentile(q)
            assert got is not None and abs(got - single[int(q) - 1]) <= 6e-6, (metric, q)
    # Every gap between tokens is only in histograms: the workers' added up are the master's.
    itl = ExactHistogram()
    for share in shares:
        itl.merge(share.itl)
    assert itl == merged.itl and itl.count >= 8 * 9
    summary = merged.summary()["metrics_ms"]["ttft"]
    assert summary["p99"] == pytest.approx(single_ms(raw["ttft"], 99), abs=0.006)


def single_ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def test_two_concurrent_multi_process_runs_do_not_interfere(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    # Locust's master binds the fixed *:5557 by default: a second run at the same time then
    # fails to bind and its workers join the first run's master (KeyError on a user class the
    # other master never heard of). Each run must get its own master port.
    def start(out: Path, transport: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "streamharness.cli", "load", "--out", str(out),
             "--think-time", "0", "--prompt", PROMPT, "--target", live_stack.server,
             "--users", "2", "--duration", "3s", "--processes", "2", "--transport", transport,
             "--max-error-rate", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    runs = {t: (tmp_path / t, start(tmp_path / t, t)) for t in ("ws", "tutorial")}
    try:
        outputs = {t: proc.communicate(timeout=50)[0] for t, (_, proc) in runs.items()}
    finally:
        for _, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for transport, (out, proc) in runs.items():
        assert proc.returncode == 0, outputs[transport]
        assert "--out is deprecated; use --report DIR" in outputs[transport]
        rows = streams(out)
        assert len(rows) >= 2
        # only this run's users: no worker of the other run reported here
        assert {row["transport"] for row in rows} == {transport}
    ports = {re.findall(r"Locust master on 127\.0\.0\.1:(\d+)", o)[0] for o in outputs.values()}
    assert len(ports) == 2


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_cancel_and_drop_then_resume(live_stack: LiveStack, tmp_path: Path, transport: str) -> None:
    r, s = run_load(
        tmp_path, "--target", live_stack.server, "--users", "2", "--duration", "3s",
        "--transport", transport, "--prompt", LONGER,
        "--cancel-rate", "0.5", "--drop-rate", "0.5", "--interrupt-after", "3",
        "--max-error-rate", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["outcomes"]["cancelled"] >= 1
    assert s["outcomes"]["resumed"] >= 1
    for row in streams(tmp_path):
        if row["outcome"] == "resumed":
            assert row["tokens"] == "20"  # nothing lost, nothing duplicated across the resume
        else:
            assert row["outcome"] == "cancelled"
            assert 3 <= int(row["tokens"]) <= 20


def test_an_unreachable_target_is_refused_before_locust_starts(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # nothing listens on `port` now
    r, s = run_load(
        tmp_path, "--target", f"http://127.0.0.1:{port}", "--users", "1", "--duration", "30s",
    )  # fmt: skip
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"target http://127.0.0.1:{port} is unreachable (127.0.0.1:{port}: " in r.stderr
    assert "start the server, or fix --target" in r.stderr
    assert s == {} and not (tmp_path / "locust.log").exists()  # no Locust, no 30 s run


def test_a_run_where_every_stream_fails_exits_1_without_gates_and_says_why(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    # OpenAI requests to the reference server (it has no /v1/chat/completions): the server
    # answers, so the preflight passes, and every stream fails.
    r, s = run_load(
        tmp_path, "--target", live_stack.server, "--transport", "openai", "--users", "2",
        "--duration", "4s", "--think-time", "0.2",
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert s["error_rate"] == 1.0
    assert "every stream that ended was an error (error rate 100%)" in r.stderr
    errors = sum(s["outcomes"][o] for o in ("error", "timeout", "disconnected"))
    assert f"errors: {errors} stream(s) failed; most frequent reasons:" in r.stdout
    reason = re.search(r"^\s+(\d+)  error: POST /v1/chat/completions -> 404", r.stdout, re.M)
    assert reason is not None and int(reason[1]) == errors, r.stdout
    # stderr is a pipe here: plain progress lines (not \r), the first at once, then every 5 s
    progress = [
        line for line in r.stderr.splitlines() if line.startswith("load: ") and " s  users" in line
    ]
    assert progress and "\r" not in r.stderr, r.stderr
    assert re.match(r"load: \d+/4 s  users [0-2]  streams \d+  tokens/s (\d+|-)  errors \d+  "
                    r"TTFT p50 -$", progress[-1]), progress  # fmt: skip


def test_progress_shows_the_live_figures_and_q_silences_it(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    r, _ = run_load(
        tmp_path, "--target", live_stack.server, "--users", "2", "--duration", "7s",
        "--max-error-rate", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lines = re.findall(r"^load: (\d+)/7 s  users (\d+)  streams (\d+)  tokens/s (\S+)  "
                       r"errors (\d+)  TTFT p50 (\S+)", r.stderr, re.M)  # fmt: skip
    assert len(lines) >= 2, r.stderr  # one at once, then every 5 s
    elapsed, users, streams_so_far, rate, errors, ttft = lines[-1]
    assert int(elapsed) >= 5 and users == "2" and int(streams_so_far) >= 4 and errors == "0"
    # 2 users back to back, 10 tokens per ~0.38 s stream: ~26 tokens/s each
    assert 25 <= float(rate) <= 80, lines
    assert 190 <= float(ttft) <= 330
    quiet, _ = run_load(
        tmp_path / "q", "--target", live_stack.server, "--users", "1", "--duration", "3s", "-q"
    )
    assert quiet.returncode == 0 and " s  users" not in quiet.stderr, quiet.stderr


def test_without_target_it_starts_the_reference_stack_and_reports_by_default(
    tmp_path: Path,
) -> None:
    r, s = run_load(
        tmp_path, "--users", "2", "--duration", "2s", "--max-error-rate", "0", cwd=tmp_path
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "started the reference stack" in r.stdout
    assert s["outcomes"]["completed"] >= 2
    assert 190 <= p(s, "ttft") <= 330
    (folder,) = [d for d in (tmp_path / "streamharness-reports").iterdir() if d.is_dir()]
    assert (folder / "stack-logs").is_dir() and (folder / "report.html").is_file()
    assert (folder / "locust.html").is_file()  # Locust's own report, beside ours
    assert "*" in (tmp_path / "streamharness-reports" / ".gitignore").read_text().split()


def test_server_workers_share_the_load_behind_nginx_and_redis(tmp_path: Path) -> None:
    from scenarios.stack.nginx import NginxUnavailable, find_nginx
    from scenarios.stack.redis import RedisUnavailable, find_redis

    try:
        find_nginx()
        find_redis()
    except (NginxUnavailable, RedisUnavailable) as exc:
        pytest.skip(f"needs nginx and redis-server: {exc}")
    r, s = run_load(
        tmp_path, "--users", "2", "--duration", "3s", "--transport", "ws",
        "--server-workers", "2", "--max-error-rate", "0", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 workers behind nginx, store redis" in r.stdout
    assert s["outcomes"]["completed"] >= 4 and s["error_rate"] == 0
    workers = json.loads((tmp_path / "workers.json").read_text())
    # Each worker's own /stats: two processes, both on Redis, both started streams (nginx's
    # round-robin gave each user's WebSocket to a different one), and between them every
    # stream the users opened, each generated once.
    assert [w["worker"] for w in workers] == [1, 2], workers
    assert len({w["pid"] for w in workers}) == 2
    assert {w["store"] for w in workers} == {"redis"}
    assert all(w["streams"] >= 1 for w in workers), workers
    assert sum(w["streams"] for w in workers) == s["streams"]
    assert sum(w["upstream_requests"] for w in workers) == s["streams"]
    assert r.stdout.splitlines()[-1].startswith("HTML report: ")  # still the last line
    assert re.search(
        r"load: worker 2 \(http://127\.0\.0\.1:\d+, pid \d+\): [1-9]\d* streams", r.stdout
    )


def test_idle_connection_closed_by_heartbeat_is_reopened_not_an_error(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    # A server that drops connections silent for 0.6 s; users think 1.5 s between streams,
    # so every idle socket is closed under them. That is not a failed stream.
    server = start_cli(
        "reference_server", "--host", "127.0.0.1", "--port", "0",
        "--upstream", f"{live_stack.mock}/v1",
        env={
            "STREAMHARNESS_SERVER_HEARTBEAT_INTERVAL_S": "0.3",
            "STREAMHARNESS_SERVER_HEARTBEAT_TIMEOUT_S": "0.6",
        },
    )  # fmt: skip
    try:
        r, s = run_load(
            tmp_path, "--target", server.url, "--users", "2", "--duration", "5s",
            "--think-time", "1.5", "--max-error-rate", "0",
        )  # fmt: skip
    finally:
        server.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert s["outcomes"]["completed"] >= 4


def test_polling_cancel_uses_delete(live_stack: LiveStack, tmp_path: Path) -> None:
    r, _ = run_load(
        tmp_path, "--target", live_stack.server, "--users", "2", "--duration", "3s",
        "--transport", "polling", "--poll-interval", "0.05", "--cancel-rate", "1",
        "--interrupt-after", "2", "--max-error-rate", "0", "--prompt", LONGER,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    rows = streams(tmp_path)
    assert rows and all(row["outcome"] == "cancelled" for row in rows)
    # cancelled after >= 2 tokens, well before the 20th (40 ms apart, polled every 50 ms)
    assert all(2 <= int(row["tokens"]) < 20 for row in rows)


@pytest.mark.parametrize(
    ("where", "profile"),
    [("server", "tutorial"), ("mock", "openai")],
    ids=["websocket-tutorial", "sse-openai"],
)
def test_a_target_profile_drives_any_server(
    live_stack: LiveStack, tmp_path: Path, where: str, profile: str
) -> None:
    # The reference server's tutorial shape over WebSocket, and the mock itself as an
    # OpenAI-compatible SSE server: the same profiles as `run --target-profile`.
    url = live_stack.server if where == "server" else live_stack.mock
    if profile == "tutorial":
        url = "ws" + url.removeprefix("http")
    r, s = run_load(
        tmp_path, "--target", url, "--target-profile", profile, "--model", "mock-fast",
        "--users", "2", "--duration", "3s", "--max-error-rate", "0",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "load: 2 profile users" in r.stdout
    assert s["outcomes"]["completed"] >= 4
    assert 190 <= p(s, "ttft") <= 330  # the prompt's directive: TTFT 200 ms, 10 tokens
    assert all(row["tokens"] == "10" for row in streams(tmp_path))


def test_a_profile_is_checked_before_locust_starts(tmp_path: Path) -> None:
    r, _ = run_load(
        tmp_path, "--target", "ws://127.0.0.1:9", "--target-profile", "tutorial",
        "--cancel-rate", "0.5",
    )  # fmt: skip
    assert r.returncode == 2
    assert "--cancel-rate needs a cancel message; profile 'tutorial' declares none" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: nope\n")
    r, _ = run_load(tmp_path, "--target", "http://127.0.0.1:9", "--target-profile", str(bad))
    assert r.returncode == 2 and f"{bad}:1: extends: 'nope' is not a built-in" in r.stderr


def test_plain_locust_without_a_user_class_runs_the_ws_users_only(
    live_stack: LiveStack, tmp_path: Path
) -> None:
    # The README's line: `locust -f loadtests/locustfile.py --host URL`, no class named. Locust's
    # own default (every class) would mix in OpenAIUser, which fails on this server.
    locustfile = Path(__file__).resolve().parents[2] / "loadtests" / "locustfile.py"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
         "--host", live_stack.server, "--users", "2", "--spawn-rate", "2", "--run-time", "3s",
         "--only-summary", "--csv", str(tmp_path / "l"), "--sh-prompt", PROMPT,
         "--sh-think-min", "0", "--sh-think-max", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with (tmp_path / "l_stats.csv").open() as f:
        names = {(row["Type"], row["Name"]) for row in csv.DictReader(f)} - {("", "Aggregated")}
    assert names and {name for _, name in names} == {"ws"}, names
