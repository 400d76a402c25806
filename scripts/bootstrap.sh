#!/usr/bin/env bash
# Idempotent set-up: a virtual environment in .venv with the project and its dev tools,
# Debian's nginx for the scenarios that need it, Node.js for the Node servers the tests
# judge and Chromium for the test that opens the HTML reports. Quick when nothing changed.
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

# Debian packages: nginx for the nginx scenarios; redis-server for the shared stream store of
# several server workers; Node.js and npm for the tests that judge Node servers (the Vercel AI
# SDK, Express); Chromium for the reports' browser test. Installed once, together, when missing.
missing=()
if [ "${STREAMHARNESS_SKIP_NGINX:-0}" != "1" ] && ! command -v nginx >/dev/null 2>&1 \
        && [ ! -x /usr/sbin/nginx ]; then
    missing+=(nginx)
fi
if [ "${STREAMHARNESS_SKIP_REDIS:-0}" != "1" ] && ! command -v redis-server >/dev/null 2>&1 \
        && [ ! -x /usr/bin/redis-server ]; then
    missing+=(redis-server)
fi
if [ "${STREAMHARNESS_SKIP_NODE:-0}" != "1" ] && ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi
# Playwright drives Debian's Chromium (tests/test_reports_in_chromium.py): no browser download.
if [ "${STREAMHARNESS_SKIP_CHROMIUM:-0}" != "1" ] && [ ! -x /usr/bin/chromium ]; then
    missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "[bootstrap] installing Debian ${missing[*]}" >&2
        apt-get update -qq >/dev/null
        for pkg in "${missing[@]}"; do
            case "$pkg" in
            nginx)
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 \
                    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
                # We only use the binary with our own config; never leave the service running.
                (service nginx stop || true) >/dev/null 2>&1
                ;;
            redis-server)
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
                # The harness starts its own on a free port; never leave the service running.
                (service redis-server stop || true) >/dev/null 2>&1
                ;;
            chromium)
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
                ;;
            nodejs)
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
                # Debian's nodejs comes without npm; NodeSource's includes it.
                command -v npm >/dev/null 2>&1 \
                    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
                ;;
            esac
        done
    else
        echo "[bootstrap] ${missing[*]} not found and cannot install (not root or no apt-get);" \
             "the tests that need them are skipped with the reason" >&2
    fi
fi
