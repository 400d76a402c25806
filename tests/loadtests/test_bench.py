"""The benchmarks at toy sizes: they run end to end and their tables say what they measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def bench(*args: str, timeout: float = 55) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scenarios.cli", "bench", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ")][1:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_capacity_measures_lag_against_the_sources_stamps(tmp_path: Path) -> None:
    r = bench(
        "capacity", "--rates", "1000", "--users", "5", "--duration", "3", "--out", str(tmp_path)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (row,) = _rows((tmp_path / "capacity.md").read_text())
    fps, lag_p50 = float(row[4].replace(",", "")), float(row[5])
    assert 500 <= fps <= 1200  # 5 users x one token every 5 ms
    assert 0 <= lag_p50 < 50  # a real, small delay: the stamps are the source's send times


def test_transports_with_injected_latency(tmp_path: Path) -> None:
    r = bench(
        "transports", "--transports", "ws", "--users", "1", "--duration", "2",
        "--ttft-ms", "100", "--itl-ms", "10", "--tokens", "5", "--latency-ms", "100",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    clean, slow = _rows((tmp_path / "transports.md").read_text())
    assert clean[:2] == ["ws", "loopback"] and slow[:2] == ["ws", "+100 ms"]
    # the downstream latency toxic delays the first token by about 100 ms
    assert 60 <= float(slow[4]) - float(clean[4]) <= 250
