#!/usr/bin/env bash
# The README's main-job command: set up, then run the scenario suite against the reference stack.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Let Python cache compiled modules (some environments set PYTHONDONTWRITEBYTECODE): every
# process the run starts (mock, servers, fault proxy, test workers) would otherwise compile
# the project's modules again, and pytest rewrite every test module again.
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/streamharness run "$@"
