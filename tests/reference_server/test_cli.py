"""``streamharness server``: a bad option gets one line and status 2; secrets stay off argv."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from mockllm import fingerprint
from reference_server.cli import main
from streamharness import cli as umbrella
from tests.reference_server.live import BASE_ENV, Ledger, Process, start_process
from tests.reference_server.wsclient import prompt

ERROR = "streamharness server: error: "
WARNING = "streamharness server: warning: "


@pytest.fixture(autouse=True)
def _never_serve_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """An option wrongly accepted would start a server in the test process: fail, not hang."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the command started serving")

    monkeypatch.setattr(uvicorn.Server, "run", refuse)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str]:
    """Exit status and stderr of the command (argparse's own errors exit from inside)."""
    try:
        status: int | str | None = umbrella.main(["server", *argv])
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--log-level", "nonsense"], "argument --log-level: invalid choice: 'nonsense'"),
        (["--port", "99999"], "argument --port: must be 0-65535"),
        (["--port", "-1"], "argument --port: must be 0-65535"),
        (["--port", "eighty"], "argument --port: not an integer: 'eighty'"),
        (["--upstream", "ftp://x/v1"], "--upstream: must be an http:// or https:// URL"),
        (["--host", ""], "--host: String should have at least 1 character"),
        (["--host", "256.1.1.1", "--port", "0"], "cannot listen on 256.1.1.1 port 0"),
        (["--default-model", ""], "--default-model: String should have at least 1 character"),
        (["--auth-token", " "], "--auth-token: must not be blank"),
        (["--api-key", "a\nb"], "--api-key: must be one line"),
        (["--api-key", "a", "--api-key-file", "k"], "not allowed with argument --api-key"),
        (["--api-key-file", "/nonexistent/key"], "--api-key-file: cannot read /nonexistent/key"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["--provider", "gemini"], "argument --provider: invalid choice: 'gemini'"),
        (
            ["--provider", "ollama", "--upstream", "http://127.0.0.1:11434/v1"],
            "--upstream: http://127.0.0.1:11434/v1 is Ollama's OpenAI-compatible",
        ),
        (
            ["--provider", "anthropic", "--upstream", "https://api.anthropic.com"],
            "--upstream: the anthropic provider appends /messages to its base URL",
        ),
    ],
)
def test_a_bad_option_gets_one_line_and_status_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run(argv, capsys)
    assert status == 2
    [line] = err.splitlines()
    assert line.startswith(ERROR) and words in line, line
    assert "a\nb" not in err


def test_a_bad_environment_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMHARNESS_SERVER_PORT", "eighty")
    monkeypatch.setenv("STREAMHARNESS_SERVER_LOG_LEVEL", "loud")
    status, err = run([], capsys)
    assert status == 2
    [line] = err.splitlines()
    assert line.startswith(ERROR + "STREAMHARNESS_SERVER_PORT: Input should be a valid integer")
    assert "; STREAMHARNESS_SERVER_LOG_LEVEL: Input should be 'critical'" in line


def test_a_port_in_use_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["--port", str(port)])
    [line] = capsys.readouterr().err.splitlines()
    assert status == 2
    assert line == f"{ERROR}cannot listen on 127.0.0.1 port {port}: Address already in use " + (
        "(check --host and --port)"
    )


def test_the_process_answers_one_line_not_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "reference_server", "--log-level", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


# --- the upstream key: environment or file, and a warning for the flag


@pytest.fixture
def started(mock: Process) -> Iterator[list[Process]]:
    processes: list[Process] = []
    yield processes
    for process in processes:
        process.stop()


def serve(started: list[Process], mock: Process, tmp_path: Path, *args: str, **env: str) -> Process:
    argv = ["-m", "reference_server", "--port", "0", "--upstream", f"{mock.url}/v1", *args]
    process = start_process(argv, tmp_path / f"server-{len(started)}.log", {**BASE_ENV, **env})
    started.append(process)
    return process


def upstream_authorization(server: Process, ledger: Ledger) -> str:
    """The Authorization header the mock received for one blocking chat through ``server``."""
    ledger.clear()
    body = {"messages": prompt("key", tokens=2)}
    assert httpx.post(f"{server.url}/v1/chat/blocking", json=body, timeout=20).status_code == 200
    [entry] = ledger.wait(1, outcome="completed")
    return str(entry["headers"].get("authorization"))


@pytest.mark.integration
def test_the_key_flag_works_but_warns_once(
    mock: Process, ledger: Ledger, started: list[Process], tmp_path: Path
) -> None:
    server = serve(started, mock, tmp_path, "--api-key", "sk-flag-9f2")
    assert upstream_authorization(server, ledger) == "Bearer " + fingerprint("sk-flag-9f2")
    log = server.log.read_text()
    warnings = [line for line in log.splitlines() if line.startswith(WARNING)]
    assert warnings == [
        f"{WARNING}--api-key is visible to every local user in the process list; "
        "set STREAMHARNESS_SERVER_API_KEY or use --api-key-file PATH instead"
    ]
    assert "sk-flag-9f2" not in log


@pytest.mark.integration
def test_the_key_from_a_file_or_the_environment_needs_no_warning(
    mock: Process, ledger: Ledger, started: list[Process], tmp_path: Path
) -> None:
    key_file = tmp_path / "upstream.key"
    key_file.write_text("sk-file-51c\n")  # as `echo` writes it: the newline is not the key's
    from_file = serve(started, mock, tmp_path, "--api-key-file", str(key_file))
    assert upstream_authorization(from_file, ledger) == "Bearer " + fingerprint("sk-file-51c")
    from_env = serve(started, mock, tmp_path, STREAMHARNESS_SERVER_API_KEY="sk-env-0d7")
    assert upstream_authorization(from_env, ledger) == "Bearer " + fingerprint("sk-env-0d7")
    for server in (from_file, from_env):
        assert WARNING not in server.log.read_text()
