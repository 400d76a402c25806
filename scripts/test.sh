#!/usr/bin/env bash
# The README's test command: set up, lint, type-check, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Let Python cache compiled modules (some environments set PYTHONDONTWRITEBYTECODE): every
# process the run starts (mock, servers, fault proxy, test workers) would otherwise compile
# the project's modules again, and pytest rewrite every test module again.
unset PYTHONDONTWRITEBYTECODE
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# One worker per core: most integration tests wait on paced streams, so two run side by side in
# about the time of one (more workers than cores starved the Chromium and timing tests here).
# loadgroup keeps each xdist_group (the busy-loop tests, the Chromium scenarios) on one worker.
# Pass -n 0 to run in one process (e.g. with --pdb).
.venv/bin/pytest -n auto --dist loadgroup "$@"
