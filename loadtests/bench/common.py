"""Shared pieces of the benchmarks: run one headless Locust cell, read its exact metrics."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loadtests.cli import LOCUSTFILE, master_port_args, run_locust
from loadtests.errors import LoadError
from loadtests.metrics import LoadMetrics
from loadtests.options import non_negative, positive


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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table, the form every bench prints and writes."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def command_line(argv: Sequence[str] | None) -> str:
    """The bench's own arguments as typed, for the replay line under a table."""
    return " ".join(argv if argv is not None else sys.argv[1:])


def done(metrics: LoadMetrics) -> int:
    """Streams that finished (completed or resumed) during the cell."""
    counts = metrics.outcome_counts()
    return counts["completed"] + counts["resumed"]


def add_arrival_arguments(p: argparse.ArgumentParser) -> None:
    """``--arrival``, ``--ramp-s``, ``--jitter-ms`` and ``--seed`` (see :class:`Arrival`)."""
    p.add_argument(
        "--arrival",
        choices=("stagger", "lockstep"),
        default="stagger",
        help="stagger: users start evenly over --ramp-s and keep a seeded jitter between "
        "streams; lockstep: all at once, no think time (a synchronized burst)",
    )
    p.add_argument(
        "--ramp-s",
        type=positive,
        default=None,
        help="stagger: seconds over which the users start (default: one answer's length, >= 1)",
    )
    p.add_argument(
        "--jitter-ms",
        type=non_negative,
        default=20.0,
        help="stagger: think time between a user's streams, uniform in [0, this] (seeded)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the users' think times")


@dataclass(frozen=True)
class Arrival:
    """How a cell's users start and pace their streams (pure: no I/O)."""

    ramp_s: float  # 0 = all at once
    jitter_s: float  # think time upper bound between a user's streams
    seed: int

    def locust_args(self, users: int) -> list[str]:
        # run_cell passes --spawn-rate USERS and zero think time first: these come later, and
        # Locust's argument parser keeps the last value.
        rate = users / self.ramp_s if self.ramp_s > 0 else float(users)
        return [
            "--spawn-rate", f"{rate:g}", "--sh-think-min", "0",
            "--sh-think-max", f"{self.jitter_s:g}", "--sh-seed", str(self.seed),
        ]  # fmt: skip

    def run_time(self, duration_s: float) -> float:
        # Locust takes whole seconds for --run-time; rounded up, the steady part is not shorter.
        return float(math.ceil(self.ramp_s + duration_s))


def arrival_for(args: argparse.Namespace, answer_s: float) -> Arrival:
    """The arrival model of ``args`` for answers whose schedule lasts ``answer_s`` seconds."""
    if args.arrival == "lockstep":
        return Arrival(0.0, 0.0, args.seed)
    ramp = args.ramp_s if args.ramp_s is not None else max(1.0, answer_s)
    return Arrival(ramp, args.jitter_ms / 1000, args.seed)
