"""``streamharness run | list | replay``: usage errors, exit codes, output, reports."""

from __future__ import annotations

import io
import json
import shlex
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from scenarios import model, runner_cli
from scenarios.report import ScenarioResult
from scenarios.seeds import repetition_seed
from streamharness import cli
from tests.support import wait_for

BAD = """\
name: bad
description: a scenario with a typo
expect: {reference: pass}
clients:
  - count: 2
    trasnport: ws
checks:
  - check: every_stream_ended
"""


def test_list_shows_every_scenario_and_expectations(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "nginx_idle_timeout" in out and "reference: pass, naive: fail [nginx]" in out
    assert out.strip().endswith("scenarios")


def test_list_filters_by_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner_cli.list_main(["nginx", "-v"]) == 0
    out = capsys.readouterr().out
    assert "sse_resume_nginx" in out and "concurrency" not in out
    assert out.strip().endswith("9 scenarios")  # 3, and the 6 on several workers


def test_unknown_scenario_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner_cli.run_main(["concurency"]) == 2
    assert "unknown scenario 'concurency' (did you mean concurrency?)" in capsys.readouterr().err
    assert runner_cli.replay_main(["3", "nope"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err


def test_bad_scenario_file_names_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    assert runner_cli.run_main(["--file", str(path), "bad"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:6: clients[0].trasnport: unknown field" in err


def test_bad_catalogue_directory_reports_every_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "worse.yaml").write_text("name: worse\ndescription: [\n")
    assert runner_cli.list_main(["--catalogue", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:6:" in err and "worse.yaml:" in err and "invalid YAML" in err


def test_bad_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        runner_cli.run_main(["--seed", "-4"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        runner_cli.run_main(["--target", "gopher://x"])
    assert "use 'reference', 'naive' or the URL" in capsys.readouterr().err


@pytest.mark.parametrize("target", ["naive", "ws://127.0.0.1:9"])
def test_provider_is_the_reference_server_s(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner_cli.run_main(["--target", target, "--provider", "anthropic", "concurrency"]) == 2
    err = capsys.readouterr().err
    assert f"--target {target} calls it its own way" in err and "drop --provider" in err
    with pytest.raises(SystemExit):
        runner_cli.run_main(["--provider", "gemini"])
    assert "argument --provider: invalid choice: 'gemini'" in capsys.readouterr().err


def test_unreachable_target(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        assert runner_cli.run_main(["--target", f"ws://127.0.0.1:{port}", "concurrency"]) == 2
    err = capsys.readouterr().err
    assert f"target ws://127.0.0.1:{port} is unreachable" in err


@pytest.mark.integration
def test_failure_prints_seed_and_replay_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["end_marker_in_answer", "--target", "naive", "--seed", "99", "-q"]
    assert runner_cli.run_main([*argv, "--report", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED end_marker_in_answer on naive (seed 99)" in out
    assert "replay: streamharness replay 99 end_marker_in_answer --target naive" in out
    assert "text equals the mock's answer" in out
    assert out.splitlines()[-1] == f"HTML report: {tmp_path / 'report.html'}"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["results"][0]["verdict"] == "fail"
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    assert (tmp_path / "end_marker_in_answer-99.txt").read_text().count("[FAIL]") >= 1
    # The same failure is what the scenario expects of the naive server.
    assert runner_cli.run_main([*argv, "--expectations", "--no-report"]) == 0


@pytest.mark.integration
def test_replay_runs_one_scenario_with_the_seed_and_reports_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner_cli.replay_main(["5", "end_marker_in_answer", "-q"]) == 0
    out = capsys.readouterr().out
    assert "end_marker_in_answer  5     PASS" in out
    assert "1 runs on reference (seed 5): 1 pass" in out
    # No --report: a new folder under streamharness-reports/, its HTML report named last.
    (folder,) = [p for p in (tmp_path / "streamharness-reports").iterdir() if p.is_dir()]
    html = Path(out.splitlines()[-1].removeprefix("HTML report: "))
    assert html == Path("streamharness-reports") / folder.name / "report.html"
    assert (tmp_path / html).is_file() and (folder / "junit.xml").is_file()


@pytest.mark.integration
def test_repeat_derives_one_seed_per_repetition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["end_marker_in_answer", "--seed", "5", "--repeat", "2", "-q", "--no-report"]
    assert runner_cli.run_main(argv) == 0
    assert list(tmp_path.iterdir()) == []  # --no-report: not even the default folder
    out = capsys.readouterr().out
    assert "2 runs on reference (seed 5): 2 pass" in out
    seeds = [line.split()[1] for line in out.splitlines() if line.startswith("end_marker_in")]
    assert seeds == ["5", str(repetition_seed(5, 1))]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_is_rewritten_in_place_on_a_terminal() -> None:
    stream = _Tty()
    progress = runner_cli.Progress(stream, enabled=True)
    progress.start(2, 15, "jitter", 7)
    result = ScenarioResult(scenario="jitter", target="reference", seed=7, verdict="pass")
    progress.done(result)
    text = stream.getvalue()
    assert text.startswith("\r[2/15] jitter (seed 7): starting the stack")
    # the final line overwrites the status line, blanks included, and ends it
    last = text.split("\r")[-1]
    assert last.endswith("\n") and last.rstrip() == "[2/15] jitter (seed 7): PASS in 0.0 s"
    assert len(last) - 1 >= len("[2/15] jitter (seed 7): starting the stack")


def test_progress_without_a_terminal_prints_one_line_per_run() -> None:
    stream = io.StringIO()
    progress = runner_cli.Progress(stream, enabled=True)
    progress.start(1, 1, "x", 1)
    progress.update("3/4 streams ended")
    skipped = ScenarioResult(scenario="x", target="naive", seed=1, verdict="skip", reason="why")
    progress.done(skipped)
    assert stream.getvalue() == "[1/1] x (seed 1): SKIP in 0.0 s\n"  # the reason comes later


@pytest.mark.integration
def test_ctrl_c_stops_every_process_and_exits_130() -> None:
    argv = [sys.executable, "-m", "streamharness.cli", "run", "upstream_429_then_success", "-q",
            "--no-report"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        children = wait_for(
            lambda: psutil.Process(proc.pid).children(recursive=True),
            timeout_s=30,
            what="mock and server processes",
            until=lambda found: len(found) >= 2,
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert "interrupted; every process was stopped" in err
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_the_printed_replay_line_replays_a_scenario_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A scenario of the user's own, from a file, that fails on the naive server.
    source = model.CATALOGUE_DIR / "end_marker_in_answer.yaml"
    mine = tmp_path / "my_end_marker.yaml"
    mine.write_text(source.read_text().replace("name: end_marker_in_answer", "name: my_end_marker"))
    argv = ["my_end_marker", "--file", str(mine), "--target", "naive", "--seed", "41", "-q"]
    assert runner_cli.run_main([*argv, "--mock-model", "gpt-4o-mini", "--no-report"]) == 1
    out = capsys.readouterr().out
    (line,) = [x.strip() for x in out.splitlines() if x.strip().startswith("replay: ")]
    command = line.removeprefix("replay: ")
    assert f"--file {mine}" in command and "--mock-model gpt-4o-mini" in command
    # Run exactly what was printed, as a user would paste it.
    args = shlex.split(command)
    assert args[:2] == ["streamharness", "replay"]
    replayed = subprocess.run(
        [sys.executable, "-m", "streamharness.cli", *args[1:], "-q", "--no-report"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "FAILED my_end_marker on naive (seed 41)" in replayed.stdout
    assert "text equals the mock's answer" in replayed.stdout


@pytest.mark.integration
def test_expected_failures_hint_at_expectations_and_skips_are_said_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["end_marker_in_answer", "mid_stream_cancel", "--target", "naive", "--seed", "3"]
    assert runner_cli.run_main([*argv, "--no-report"]) == 1
    captured = capsys.readouterr()
    assert (
        "every failure (1) is what the scenarios expect of this target: add --expectations"
        in captured.out
    )
    reason = "needs a cancel message; profile tutorial declares none"
    assert (captured.out + captured.err).count(reason) == 1
    assert runner_cli.run_main([*argv, "--no-report", "--expectations"]) == 0
    assert "add --expectations" not in capsys.readouterr().out
