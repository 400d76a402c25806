"""Shared pieces of the benchmarks: run one headless Locust cell, read its exact metrics."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.cli import LOCUSTFILE, LoadError, master_port_args, run_locust
from loadtests.metrics import LoadMetrics


@dataclass
class Cell:
    """One Locust run: its merged metrics and the CPU seconds its processes used."""

    metrics: LoadMetrics
    cpu_s: float
    wall_s: float
    log: Path


def run_cell(
    *,
    host: str,
    user_class: str,
    users: int,
    duration_s: float,
    out_dir: Path,
    name: str,
    processes: int = 1,
    extra: Sequence[str] = (),
) -> Cell:
    """Run Locust headless for ``duration_s`` and return its merged metrics and CPU cost."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / f"{name}.metrics.json"
    metrics_path.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", host,
        "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{duration_s:g}s",
        "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING",
        "--sh-metrics-out", str(metrics_path), "--sh-quiet",
        "--sh-think-min", "0", "--sh-think-max", "0", *extra,
    ]  # fmt: skip
    if processes > 1:
        cmd += ["--processes", str(processes)]
    cmd += master_port_args(processes, extra)
    cmd.append(user_class)
    # Locust's CPU: RUSAGE_CHILDREN covers every reaped descendant (workers included).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = os.times().elapsed
    run_locust(cmd, out_dir / f"{name}.locust.log", timeout_s=duration_s + 90)
    wall = os.times().elapsed - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if not metrics_path.exists():
        raise LoadError(f"Locust wrote no metrics for {name}; see {out_dir}/{name}.locust.log")
    metrics = LoadMetrics.from_dict(json.loads(metrics_path.read_text()))
    return Cell(metrics, cpu, wall, out_dir / f"{name}.locust.log")


def machine() -> str:
    cpus = os.cpu_count()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{platform.system()} {platform.release()}, {cpus} CPUs ({model}), Python {python}"


def ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.2f}"


def done(metrics: LoadMetrics) -> int:
    """Streams that finished (completed or resumed) during the cell."""
    counts = metrics.outcome_counts()
    return counts["completed"] + counts["resumed"]
