#!/usr/bin/env bash
# The README's main-job command: set up, then run the scenario suite against the reference stack.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Every process the run starts would otherwise compile the project again (see scripts/test.sh).
unset PYTHONDONTWRITEBYTECODE
exec .venv/bin/streamharness run "$@"
