"""mockllm.bench: the arithmetic, the peers' set-up, and tiny end-to-end runs of the servers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from mockllm.bench import StreamResult, build_parser, gap_errors_ms, gap_summary
from mockllm.bench import cli as bench_cli
from mockllm.bench.cli import main as bench_main
from mockllm.bench.cli import ratios, table, workers_ceiling
from mockllm.bench.client import request_bytes
from mockllm.bench.servers import (
    AIMOCK_PACKAGE,
    DEFAULT_AIMOCK_DIR,
    aimock_command,
    aimock_fixtures,
    prompt,
)


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


def test_ratios_are_taken_round_by_round() -> None:
    rounds = {
        "mockllm": [{"chunks_per_s": 300}, {"chunks_per_s": 200}, {"chunks_per_s": 0}],
        "aimock": [{"chunks_per_s": 100}, {"chunks_per_s": 200}, {"chunks_per_s": 50}],
    }
    # A round where either figure is missing (0: nothing measured) has no ratio.
    assert ratios(rounds, "requests") == {
        "mockllm/aimock": {"figure": "chunks_per_s", "median": 2.0, "rounds": [3.0, 1.0]}
    }


def test_the_workers_row_is_compared_with_one_worker() -> None:
    rounds = {
        "mockllm": [{"chunks_per_s": 100}, {"chunks_per_s": 200}],
        "mockllm x2 workers": [{"chunks_per_s": 180}, {"chunks_per_s": 340}],
        "aimock": [{"chunks_per_s": 50}, {"chunks_per_s": 100}],
    }
    assert ratios(rounds, "requests") == {
        "mockllm x2 workers/mockllm": {
            "figure": "chunks_per_s",
            "median": 1.75,
            "rounds": [1.8, 1.7],
            "ceiling": None,  # no CPU figures in these rounds
        },
        "mockllm/aimock": {"figure": "chunks_per_s", "median": 2.0, "rounds": [2.0, 2.0]},
    }


def test_the_workers_ceiling_counts_the_client_on_the_same_cores() -> None:
    one = [{"cpu_us_per_request": 280}]
    # Two cores, each request costs 290 us in a worker and 70 us in the client: at most
    # 2 * 280 / 360 = 1.56 times one worker that has a core to itself.
    workers = [{"cpu_us_per_request": 290, "client_cpu_us_per_request": 70}]
    with mock.patch.object(bench_cli, "_ALL_CPUS", frozenset({0, 1})):
        assert workers_ceiling(workers, one, "mockllm x2 workers") == 1.56
        # Never more than the number of workers, however cheap the client.
        cheap = [{"cpu_us_per_request": 280, "client_cpu_us_per_request": 1}]
        assert workers_ceiling(cheap * 3, one * 3, "mockllm x2 workers") == 1.99
    with mock.patch.object(bench_cli, "_ALL_CPUS", frozenset(range(8))):
        assert workers_ceiling(workers, one, "mockllm x2 workers") == 2


@pytest.mark.parametrize("value", ["1", "-2"])
def test_the_bench_refuses_a_workers_count_below_two(value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_main(["--workers", value, "--skip=formats"])
    assert stopped.value.code == 2


def test_the_table_shows_medians_and_ratios() -> None:
    args = build_parser().parse_args(["--rounds", "2"])
    report = {
        "runs": {
            "long": {
                "mockllm": {"median": {"chunks_per_s": 123456, "chunks_per_cpu_s": 1000.5}},
                "baseline": {"median": {"chunks_per_s": 100, "cpu_us_per_chunk": 2.25}},
            }
        },
        "ratios": {
            "long": {
                "mockllm/baseline": {
                    "figure": "chunks_per_cpu_s",
                    "median": 1.5,
                    "rounds": [1.4, 1.6],
                }
            }
        },
    }
    text = table(report, args)
    assert "long: 100 streams x 2000 chunks, zero delay (medians of 2 rounds)" in text
    assert "123,456" in text and "1,000" in text and "2.25" in text
    assert "mockllm/baseline chunks_per_cpu_s: 1.50 (1.4, 1.6)" in text


def test_aimock_gets_one_fixture_per_workload_matched_by_its_prompt() -> None:
    fixtures = aimock_fixtures([(200, 0.0), (50, 20.0), (200, 0.0)])["fixtures"]
    assert len(fixtures) == 2
    paced = next(f for f in fixtures if f["match"]["userMessage"] == prompt(50, 20.0))
    assert len(paced["response"]["content"]) == 50 * paced["chunkSize"]
    assert paced["streamingProfile"] == {"ttft": 0, "tps": 50.0}
    instant = next(f for f in fixtures if f["match"]["userMessage"] == prompt(200, 0.0))
    assert "streamingProfile" not in instant
    # aimock matches a user message by substring: no prompt may contain another.
    assert prompt(20, 2) not in prompt(20, 20) and prompt(2, 20) not in prompt(20, 20)
    assert prompt(200, 0).encode() in request_bytes(200, 0, keep_alive=True)


def test_aimock_not_installed_says_how_to_install_it(tmp_path: Path) -> None:
    command, why = aimock_command(tmp_path, tmp_path / "fixtures.json")
    assert command is None
    if shutil.which("node") is None:
        assert why == "node is not on PATH"
    else:
        assert why == (
            f"{AIMOCK_PACKAGE} is not installed in {tmp_path} "
            f"(npm install --prefix {tmp_path} {AIMOCK_PACKAGE})"
        )


_TINY = [
    "--rounds=1",
    "--users=4",
    "--request-tokens=30",
    "--duration-s=0.3",
    "--burst-streams=5",
    "--burst-tokens=5",
    "--burst-itl-ms=5",
    "--long-streams=3",
    "--long-tokens=100",
    "--timing-streams=5",
    "--timing-tokens=5",
    "--timing-itl-ms=10",
    "--stagger-s=0.05",
]


def _run(tmp_path: Path, *extra: str) -> tuple[dict[str, object], str]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "mockllm.bench", *_TINY, f"--json={out}", *extra],
        check=True,
        capture_output=True,
        text=True,
        timeout=90,
    )
    return json.loads(out.read_text()), done.stdout


@pytest.mark.integration
def test_tiny_benchmark_run(tmp_path: Path) -> None:
    report, printed = _run(tmp_path, f"--aimock-dir={tmp_path / 'none'}")
    assert str(report["aimock"]).startswith("not measured: ")
    runs = report["runs"]
    assert isinstance(runs, dict)
    for name in ("mockllm", "baseline"):
        requests = runs["requests"][name]["median"]
        assert requests["failed"] == 0 and requests["requests"] >= 4
        assert requests["chunks"] == 30 * requests["requests"]
        assert requests["cpu_us_per_request"] > 0 and requests["ttft_ms"]["p50"] > 0
        burst = runs["burst"][name]["median"]
        assert burst["chunks"] == 5 * 5 * 2 and burst["ttft_first_ms"]["count"] == 5
        assert burst["gap_error_ms"]["count"] > 0
        assert runs["long"][name]["median"]["chunks"] == 300
        assert runs["timing"][name]["median"]["chunks"] == 25
    assert report["ratios"]["requests"]["mockllm/baseline"]["figure"] == "chunks_per_s"
    assert "requests: 4 users, requests back to back for 0.3 s" in printed


@pytest.mark.integration
def test_tiny_run_with_workers(tmp_path: Path) -> None:
    report, printed = _run(
        tmp_path, "--no-aimock", "--no-baseline", "--skip=burst", "--skip=long", "--workers=2"
    )
    runs = report["runs"]
    assert isinstance(runs, dict)
    requests = runs["requests"]["mockllm x2 workers"]["median"]
    assert requests["failed"] == 0 and requests["chunks"] == 30 * requests["requests"]
    assert requests["cpu_us_per_request"] > 20  # the workers' CPU, not only the parent's
    assert runs["timing"]["mockllm x2 workers"]["median"]["chunks"] == 25
    assert "mockllm x2 workers/mockllm chunks_per_s" in printed
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        # One worker has the first core; the workers every core, not the client's alone.
        assert runs["requests"]["mockllm"]["median"]["server_cpus"] == cpus[:1]
        assert runs["requests"]["mockllm x2 workers"]["median"]["server_cpus"] == cpus


@pytest.mark.integration
@pytest.mark.skipif(
    aimock_command(DEFAULT_AIMOCK_DIR, Path("x"))[0] is None,
    reason=f"aimock is not installed in {DEFAULT_AIMOCK_DIR}",
)
def test_tiny_run_with_aimock(tmp_path: Path) -> None:
    report, _ = _run(tmp_path, "--no-baseline", "--skip=long", "--skip=timing")
    assert str(report["aimock"]).startswith(AIMOCK_PACKAGE)
    runs = report["runs"]
    assert isinstance(runs, dict)
    requests = runs["requests"]["aimock"]["median"]
    assert requests["failed"] == 0 and requests["chunks"] == 30 * requests["requests"]
    assert runs["burst"]["aimock"]["median"]["chunks"] == 50
    assert "mockllm/aimock" in report["ratios"]["requests"]


def test_every_format_has_an_encoder_line() -> None:
    from mockllm.bench.formats import FORMAT_BODIES, formats_table, measure_formats
    from mockllm.routes import FORMATS, GEMINI

    results = measure_formats(tokens=300, rounds=1)
    served = {fmt.name for fmt in FORMATS.values()} | {GEMINI.name}
    vectors = results.pop("openai_embeddings_vectors")
    assert vectors["vectors_per_cpu_s"] > 0
    assert set(results) == set(FORMAT_BODIES) == served - {"openai_embeddings"}
    for row in results.values():
        assert row["stream_tokens_per_cpu_s"] > 0 and row["body_tokens_per_cpu_s"] > 0
        assert row["stream_bytes_per_token"] > 5
    text = formats_table({**results, "openai_embeddings_vectors": vectors}, 300)
    assert all(name in text for name in served)
