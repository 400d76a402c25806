"""mockllm.bench: the gap-error arithmetic, and a tiny end-to-end run of both servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mockllm.bench import StreamResult, gap_errors_ms, gap_summary


def test_gap_errors_against_the_scheduled_gap() -> None:
    result = StreamResult(tokens=4, arrivals=[(0.0, 1), (0.051, 2), (0.149, 4)])
    # 51 ms for one token (1 ms late), 98 ms for two tokens at 50 ms (2 ms early).
    assert [round(e, 6) for e in gap_errors_ms([result], 50.0)] == [1.0, 2.0]


def test_gap_summary_uses_nearest_rank() -> None:
    # mockllm.percentiles' definition: the median of 1..100 is 50 (the old rounded rank gave 51).
    summary = gap_summary([float(v) for v in range(1, 101)])
    assert summary == {"count": 100, "p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert gap_summary([3.0])["p99"] == 3.0
    assert gap_summary([]) == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}


@pytest.mark.integration
def test_tiny_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mockllm.bench",
            "--rounds=1",
            "--throughput-streams=4",
            "--throughput-tokens=50",
            "--timing-streams=5",
            "--timing-tokens=5",
            "--timing-itl-ms=10",
            "--stagger-s=0.05",
            f"--json={out}",
        ],
        check=True,
        capture_output=True,
        timeout=50,
    )
    report = json.loads(out.read_text())
    for name in ("mockllm", "baseline"):
        throughput = report[name]["throughput"]["median"]
        assert throughput["delivered_tokens"] == 200 and throughput["failed_streams"] == 0
        timing = report[name]["timing"]["median"]
        assert timing["delivered_tokens"] == 25
        assert timing["gap_error_ms"]["count"] > 0
    assert "tokens_per_s" in report["ratio"]
