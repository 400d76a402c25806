"""The LiteLLM proxy (``litellm[proxy]`` from PyPI) as a server under test.

LiteLLM lives in its own virtualenv in a cache folder outside the repository (its dependency
pins would fight ours). :func:`ensure_installed` builds it once; :func:`start` runs the proxy as
a real process on 127.0.0.1 in front of a provider URL (the mock's ``/v1``, or the fault proxy
in front of it)::

    async with litellm.start(mock_url + "/v1", tmp_path) as (base_url, master_key):
        client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=master_key)

What works (and what does not), found on 1.108.7:

- the proxy is configured by a YAML file written into ``log_dir`` (``litellm.yaml``): one
  ``model_list`` entry named ``model`` with ``model: openai/<model>``, ``api_base`` and an
  ``api_key``, and ``general_settings.master_key``. The command-line form
  (``litellm --model openai/<model> --api_base URL``) lists the model as
  ``openai/<model>``, routes every requested name to it, and takes no provider key (it wants
  ``OPENAI_API_KEY``) nor a master key (``LITELLM_MASTER_KEY``), so we do not use it;
- ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (and the other ``LITELLM_LOCAL_*`` switches) stop the
  fetches from ``raw.githubusercontent.com`` and ``docs.litellm.ai`` at import and start-up;
  ``--telemetry`` is a no-op in this version (nothing is sent); ``LITELLM_MODE=PRODUCTION``
  stops it loading a ``.env`` from the working directory; ``DATABASE_URL`` and the other
  inherited ``LITELLM_*``/``OPENAI_*`` variables are removed (no database: keys other than the
  master key are refused with ``400 no_db_connection``; a request without a key gets a 500,
  because the auth error handler imports ``prisma``, which only ``extra-proxy`` installs);
- readiness: ``GET /health/liveliness`` answers 200 once the app's start-up has run (the
  banner and ``Uvicorn running on ...`` are printed too, but polling is simpler);
- 1.110.x (the newest) cannot be installed with the ``proxy`` extra: it requires
  ``litellm-proxy==1.110.*``, which is not on PyPI. The later releases checked (1.108.8,
  1.108.10, 1.108.12-1.108.14, 1.109.3) pin ``litellm-proxy-extras`` or
  ``litellm-enterprise`` post-releases that are not on PyPI either. 1.108.7 resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import yaml

from scenarios.stack.procs import ManagedProcess, ProcessStartError, free_port, start_process

__all__ = [
    "LITELLM_VERSION",
    "LiteLLMInstallError",
    "cache_root",
    "ensure_installed",
    "proxy_env",
    "start",
    "venv_dir",
    "write_config",
]

LITELLM_VERSION = "1.108.7"
INSTALL_TIMEOUT_S = 900.0
_STAMP = ".streamharness-installed"

# Fetched from the internet by default (at import, at start-up, or by admin endpoints).
_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
    "LITELLM_MODE": "PRODUCTION",  # DEV (the default) loads ./.env
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "PYTHONUNBUFFERED": "1",
}
_DROPPED_PREFIXES = ("LITELLM_", "OPENAI_", "DATABASE_", "REDIS_", "AZURE_", "ANTHROPIC_")
_DROPPED = {"DIRECT_URL", "STORE_MODEL_IN_DB", "UI_USERNAME", "UI_PASSWORD"}


class LiteLLMInstallError(Exception):
    """``pip install litellm[proxy]`` failed; the message has the tail of its log."""


def cache_root() -> Path:
    """``$STREAMHARNESS_LITELLM_CACHE``, else ``$XDG_CACHE_HOME/streamharness`` (~/.cache)."""
    explicit = os.environ.get("STREAMHARNESS_LITELLM_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "streamharness"


def venv_dir() -> Path:
    return cache_root() / f"litellm-{LITELLM_VERSION}"


def _installed(venv: Path) -> bool:
    try:
        stamp = (venv / _STAMP).read_text().split()
    except OSError:
        return False
    return bool(stamp) and stamp[0] == LITELLM_VERSION and (venv / "bin" / "litellm").is_file()


def ensure_installed() -> Path:
    """The venv's ``litellm`` executable; ``pip install litellm[proxy]==LITELLM_VERSION`` once.

    Idempotent: a stamp file written last marks a finished venv, so a second call is one
    ``stat``. Safe when processes race: the build runs under an exclusive ``flock`` on
    ``litellm-<version>.lock`` and whoever waited finds the stamp. A venv cannot be renamed
    (its scripts hold absolute paths), so it is built in place; one without the stamp (an
    interrupted install) is removed and built again. Blocking (a minute on a first install):
    call it from a thread in async code.
    """
    venv = venv_dir()
    exe = venv / "bin" / "litellm"
    if _installed(venv):
        return exe
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not _installed(venv):
                _install(venv)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return exe


def _install(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    log = venv.parent / f"{venv.name}.install.log"
    # The interpreter this venv was made from (a venv of a venv would inherit nothing useful).
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    python = str(venv / "bin" / "python")
    steps = [
        [base_python, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         f"litellm[proxy]=={LITELLM_VERSION}"],
    ]  # fmt: skip
    started = time.monotonic()
    with log.open("w") as out:
        for argv in steps:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
            try:
                subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    check=True,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                shutil.rmtree(venv, ignore_errors=True)
                raise LiteLLMInstallError(
                    f"installing litellm[proxy]=={LITELLM_VERSION} into {venv} failed: {exc}; "
                    f"log {log}:\n{_tail(log)}"
                ) from exc
    elapsed = time.monotonic() - started
    (venv / _STAMP).write_text(f"{LITELLM_VERSION} installed in {elapsed:.1f} s\n")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def proxy_env() -> dict[str, str]:
    """Our environment without settings LiteLLM would pick up, plus the offline switches."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED
    }
    env.update(_OFFLINE_ENV)
    return env


def write_config(path: Path, provider_url: str, model: str, master_key: str) -> Path:
    """The proxy's config: ``model`` (as clients name it) -> ``openai/<model>`` at the URL."""
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": provider_url,
                    "api_key": "sk-streamharness-provider",
                },
            }
        ],
        "general_settings": {"master_key": master_key},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _wait_ready(proc: ManagedProcess, base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while True:
            if not proc.running:
                raise ProcessStartError(
                    f"litellm exited with code {proc.process and proc.process.returncode} "
                    f"before it was ready; log {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(f"{base_url}/health/liveliness")
                if response.status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    f"litellm not ready within {timeout_s} s; "
                    f"log {proc.log_path}:\n{_tail(proc.log_path)}"
                )
            await asyncio.sleep(0.1)


_PORT_TAKEN = re.compile(r"address already in use", re.IGNORECASE)


@contextlib.asynccontextmanager
async def start(
    provider_url: str,
    log_dir: Path,
    model: str = "gpt-4o-mini",
    *,
    ready_timeout_s: float = 120.0,
) -> AsyncIterator[tuple[str, str]]:
    """Run the proxy in front of ``provider_url`` (ending in ``/v1``); yield (base_url, key).

    ``base_url`` is the root (``http://127.0.0.1:PORT``; the OpenAI routes are under it and
    under ``/v1``), ``master_key`` the bearer token clients must send. Installs on first use.
    The log is ``log_dir/litellm.log``, the config ``log_dir/litellm.yaml``. The process is
    stopped (SIGTERM, then SIGKILL) on exit.
    """
    exe = await asyncio.to_thread(ensure_installed)
    master_key = f"sk-streamharness-{secrets.token_hex(8)}"
    config = write_config(log_dir / "litellm.yaml", provider_url, model, master_key)
    env = proxy_env()
    log_path = log_dir / "litellm.log"
    for attempt in range(3):  # free_port() can race with another process taking the port
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        argv = [str(exe), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        offset = log_path.stat().st_size if log_path.exists() else 0
        proc = await start_process("litellm", argv, log_dir=log_dir, env=env, ready_pattern=None)
        try:
            await _wait_ready(proc, base_url, ready_timeout_s)
        except ProcessStartError:
            await proc.stop(timeout_s=2.0)
            log = log_path.read_bytes()[offset:].decode(errors="replace")
            if attempt < 2 and _PORT_TAKEN.search(log):
                continue
            raise
        except BaseException:
            await proc.stop(timeout_s=2.0)
            raise
        break
    try:
        yield base_url, master_key
    finally:
        await proc.stop()
