#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the project and its dev tools,
# and Debian's nginx for the scenarios that need it. Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[bootstrap] creating .venv" >&2
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.streamharness-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[bootstrap] installing dependencies into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$want" > "$stamp"
fi

if [ "${STREAMHARNESS_SKIP_NGINX:-0}" != "1" ] && ! command -v nginx >/dev/null 2>&1 \
        && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[bootstrap] installing Debian nginx" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
        # We only use the binary with our own config; never leave the system service running.
        (service nginx stop || true) >/dev/null 2>&1
    else
        echo "[bootstrap] nginx not found and cannot install it (not root or no apt-get);" \
             "nginx scenarios will be skipped" >&2
    fi
fi
