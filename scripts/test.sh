#!/usr/bin/env bash
# The README's test command: set up, lint, type-check, run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Let Python cache compiled modules (some environments set PYTHONDONTWRITEBYTECODE): every
# process the run starts (mock, servers, fault proxy, test workers) would otherwise compile
# the project's modules again, and pytest rewrite every test module again.
unset PYTHONDONTWRITEBYTECODE
# LiteLLM's own virtualenv (tests/targets/litellm.py; about a minute the first time) builds
# while the linters and the first tests run; its tests wait for it (a file lock), and a failed
# build is tried again, and reported, by the first of them.
.venv/bin/python -c 'from tests.targets.litellm import ensure_installed; ensure_installed()' \
    >/dev/null 2>&1 &
litellm_build=$!
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Three workers per two cores: most integration tests wait on paced streams and deadlines,
# so with one worker per core the cores were half idle (the same tree on two cores: 7 min 18 s
# with two workers, 5 min 34 s with three). loadgroup keeps each xdist_group (the Chromium
# scenarios, the busy-loop tests, each LiteLLM module) on one worker. Pass -n 0 to run in one
# process (e.g. with --pdb); STREAMHARNESS_TEST_WORKERS sets the count.
cores=$(nproc)
workers=${STREAMHARNESS_TEST_WORKERS:-$(( cores * 3 / 2 > 0 ? cores * 3 / 2 : 1 ))}
status=0
.venv/bin/pytest -n "$workers" --dist loadgroup "$@" || status=$?
wait "$litellm_build" || true
exit "$status"
