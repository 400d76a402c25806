"""``streamharness run --target URL``: the profile checked before anything starts, the provider
URL printed, one message first, and one clear message when the target does not fit."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mockllm.childproc import start_child
from scenarios import runner_cli
from scenarios.model import load_catalogue
from scenarios.stack.procs import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Naive:
    url: str  # ws://127.0.0.1:PORT
    provider_port: int  # where it calls its provider


@pytest.fixture
def naive() -> Iterator[Naive]:
    """The naive server as an ordinary process calling its provider on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "reference_server.naive", "--port", "0"]
    server = start_child(
        [*argv, "--upstream", f"http://127.0.0.1:{port}/v1"], stderr=subprocess.STDOUT
    )
    try:
        yield Naive("ws" + server.url.removeprefix("http"), port)
    finally:
        server.stop()


def _run(naive: Naive, *args: str) -> list[str]:
    return ["--target", naive.url, "--mock-port", str(naive.provider_port), "-q", "--no-report",
            *args]  # fmt: skip


def test_a_url_target_gets_the_provider_url_and_one_message_first(
    naive: Naive, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _run(naive, "--target-profile", "tutorial", "concurrency", "--seed", "3")
    assert runner_cli.run_main(argv) == 0
    err = capsys.readouterr().err
    assert f"provider for your server: http://127.0.0.1:{naive.provider_port}/v1" in err
    assert f"checking {naive.url} (profile tutorial) with one message ... ok (" in err
    assert "ended by an end frame" in err


def test_a_wrong_path_stops_the_run_with_what_came_back(
    naive: Naive, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner_cli.run_main(_run(naive, "--target-profile", "ws-text", "concurrency")) == 2
    err = capsys.readouterr().err
    assert "failed\nstreamharness: the target answered HTTP 403" in err
    assert f"{naive.url}/ws as profile 'ws-text'" in err
    assert "Is the path (url:) or the method right" in err
    assert "running" not in err  # no scenario ran


def test_a_frame_the_profile_cannot_read_is_shown(
    naive: Naive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text(
        "extends: tutorial\nframes:\n  - {match: {type: delta}, kind: token, text: text}\n"
    )
    assert runner_cli.run_main(_run(naive, "--target-profile", str(profile), "concurrency")) == 2
    err = capsys.readouterr().err
    assert "the target sent a frame that profile 'mine'" in err
    assert """frame '{"type":"token","content":""" in err
    assert f"edit {profile} so that its frames: rules read what your server sends" in err


def test_a_server_that_does_not_call_the_provider_is_told_where_it_is(
    naive: Naive, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = free_port()
    argv = ["--target", naive.url, "--mock-port", str(elsewhere), "--target-profile", "tutorial"]
    assert runner_cli.run_main([*argv, "concurrency", "-q"]) == 2
    err = capsys.readouterr().err
    assert "never called the provider" in err
    assert f"Set your server's OpenAI base URL to http://127.0.0.1:{elsewhere}/v1" in err


def test_a_profile_must_fit_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--target", "http://127.0.0.1:9", "--target-profile", "tutorial", "concurrency"]
    assert runner_cli.run_main(argv) == 2
    err = capsys.readouterr().err
    assert "does not fit profile 'tutorial', whose transport is websocket: give a ws://" in err


def test_a_bad_profile_file_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("extends: sse-text\nmethod: PUT\n")
    argv = ["--target", "http://127.0.0.1:9", "--target-profile", str(profile), "concurrency"]
    assert runner_cli.run_main(argv) == 2
    err = capsys.readouterr().err
    assert f"invalid target profile:\n{profile}:2: method: Input should be 'GET' or 'POST'" in err


def test_list_says_what_a_profile_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner_cli.list_main(["--target-profile", "ai-sdk"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"mid_stream_cancel +skipped: needs a cancel message; profile ai-sdk", out)
    assert re.search(r"whitespace_preserved +runs", out)
    total = len(load_catalogue())
    assert f"of {total} scenarios run against your server (profile ai-sdk)" in out
    assert runner_cli.list_main(["--profiles"]) == 0
    assert "tutorial     websocket  /ws/chat/{client_id}" in capsys.readouterr().out
