"""Where reports go: a new timestamped folder by default, git-ignored; --report; --no-report."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import pytest

from scenarios.reportdir import add_report_options, chosen_report_dir, new_report_dir

NOW = datetime(2025, 12, 5, 8, 7, 1)


def test_a_new_folder_per_run_under_a_git_ignored_root(tmp_path: Path) -> None:
    root = tmp_path / "streamharness-reports"
    first = new_report_dir(root, NOW)
    second = new_report_dir(root, NOW)  # the same second: a suffix, never the same folder
    assert (first.name, second.name) == ("20251205-080701", "20251205-080701-2")
    assert first.is_dir() and second.is_dir()
    lines = (root / ".gitignore").read_text().splitlines()
    assert "*" in lines


def test_a_gitignore_the_user_edited_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("mine\n")
    new_report_dir(tmp_path, NOW)
    assert (tmp_path / ".gitignore").read_text() == "mine\n"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_report_options(parser)
    return parser.parse_args(argv)


def test_report_no_report_and_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert chosen_report_dir(_parse("--no-report")) is None
    assert not (tmp_path / "streamharness-reports").exists()
    assert chosen_report_dir(_parse("--report", "here/there")) == Path("here/there")
    assert (tmp_path / "here" / "there").is_dir()
    default = chosen_report_dir(_parse())
    assert default is not None and default.parent == Path("streamharness-reports")
    assert default.is_dir()


def test_report_and_no_report_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse("--report", "x", "--no-report")
    assert "not allowed with argument" in capsys.readouterr().err
