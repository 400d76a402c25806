"""Every scenario against every server in this folder: the verdict table of docs/profiles.md.

    python -m tests.targets.matrix [--seed 5] [--servers ws_text,litellm] [--scenarios a,b]

Each server runs as a URL target with its profile (as in ``test_verdicts.py``): a fresh
server per scenario (some exit on purpose when the provider drops), LiteLLM once for all.
Prints one line per run, then a Markdown table (P pass, F fail, - skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from scenarios.model import load_catalogue
from scenarios.report import ScenarioResult
from scenarios.runner import run_scenario
from scenarios.stack.procs import free_port
from tests.targets.catalogue import SERVERS, serve_target

ORDER = list(SERVERS)
MARKS = {"pass": "P", "fail": "F", "skip": "-", "error": "E"}


async def _judge(names: list[str], scenarios: list[str], seed: int) -> dict[str, dict[str, str]]:
    catalogue = [s for s in load_catalogue() if not scenarios or s.name in scenarios]
    table: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="streamharness-matrix-") as tmp:
        for name in names:
            row = table.setdefault(name, {})
            log_dir = Path(tmp) / name
            log_dir.mkdir()
            if name == "litellm":  # slow to start and never exits: one for all scenarios
                port = free_port()
                async with serve_target(name, port, log_dir) as options:
                    for scenario in catalogue:
                        row[scenario.name] = _show(
                            name, await run_scenario(scenario, seed, options)
                        )
                continue
            for scenario in catalogue:  # a fresh server each: some exit on purpose
                port = free_port()
                async with serve_target(name, port, log_dir) as options:
                    row[scenario.name] = _show(name, await run_scenario(scenario, seed, options))
    return table


def _show(name: str, result: ScenarioResult) -> str:
    print(f"{name:15} {result.scenario:30} {result.verdict:5} {result.reason[:300]}", flush=True)
    return result.verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.targets.matrix")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--servers", default=",".join(ORDER))
    parser.add_argument("--scenarios", default="")
    args = parser.parse_args(argv)
    names = [n for n in args.servers.split(",") if n]
    scenarios = [n for n in args.scenarios.split(",") if n]
    table = asyncio.run(_judge(names, scenarios, args.seed))
    columns = sorted({s for row in table.values() for s in row})
    print("\n| scenario | " + " | ".join(f"`{n}`" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for scenario in columns:
        marks = [MARKS.get(table[n].get(scenario, ""), "?") for n in names]
        print(f"| `{scenario}` | " + " | ".join(marks) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
