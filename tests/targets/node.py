"""Node chat servers for the harness to judge: the Vercel AI SDK and Express with ``openai``.

The servers live in ``tests/targets/node/`` (``package.json`` and ``package-lock.json`` pin
every version). :func:`ensure_installed` runs ``npm ci`` from the committed lock into a cache
outside the repository, keyed by the hash of ``package.json`` and the lock, so the repository
never holds ``node_modules`` and a second run costs nothing. :func:`start` copies a server's
``.mjs`` into that folder (Node resolves ESM imports by walking up from the script; it ignores
``NODE_PATH``) and runs it as a real process with :func:`scenarios.stack.procs.start_process`.

Servers (each ``POST /api/chat``; see the comments at the top of each ``.mjs``):

- ``ai_sdk_ui``: ``streamText`` + ``pipeUIMessageStreamToResponse`` (ai 6, UI message stream);
- ``express_openai``: Express 4 + the ``openai`` package, SSE ``data: {"content": ...}``, with
  the two flaws of the blog posts (a provider drop kills the process; a client that leaves
  does not stop the provider request).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from scenarios.stack.procs import ManagedProcess, start_process

__all__ = [
    "NODE_DIR",
    "SERVERS",
    "NodeInstallError",
    "NodeUnavailable",
    "cache_root",
    "ensure_installed",
    "launch",
    "lock_hash",
    "node_available",
    "start",
]

NODE_DIR = Path(__file__).resolve().parent / "node"
SERVERS: dict[str, str] = {
    "ai_sdk_ui": "ai_sdk_ui.mjs",
    "express_openai": "express_openai.mjs",
}
# What the pinned packages declare (ai 6: >= 18, its undici: >= 18.17). Measured on Node 20;
# Debian 12's own nodejs is 18.20, Debian 13's is 20.19.
MIN_NODE = (18, 17)
INSTALL_TIMEOUT_S = 600.0
_COMPLETE = ".streamharness-complete"


class NodeUnavailable(Exception):
    """``node`` or ``npm`` is missing or too old; ``str(exc)`` says which."""


class NodeInstallError(Exception):
    """``npm ci`` failed (registry unreachable, broken lock, ...)."""


def node_available() -> str | None:
    """None when ``node`` (>= 18.17) and ``npm`` are on PATH, else the reason they are not."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (Debian: apt-get install nodejs npm)"
    if shutil.which("npm") is None:
        return "npm is not installed (Debian: apt-get install npm)"
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"node --version failed: {exc}"
    m = re.match(r"v(\d+)\.(\d+)\.", out.strip())
    if m is None or (int(m.group(1)), int(m.group(2))) < MIN_NODE:
        return f"node {out.strip()} is too old (need >= {MIN_NODE[0]}.{MIN_NODE[1]})"
    return None


def cache_root() -> Path:
    """``$STREAMHARNESS_NODE_CACHE``, else ``$XDG_CACHE_HOME/streamharness/node-targets``."""
    explicit = os.environ.get("STREAMHARNESS_NODE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "streamharness" / "node-targets"


def lock_hash() -> str:
    """The install's key: sha256 of ``package.json`` and ``package-lock.json`` (16 hex)."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update(name.encode() + b"\0" + (NODE_DIR / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_installed() -> Path:
    """The folder holding ``node_modules`` for the committed lock; ``npm ci`` on first use.

    Idempotent and safe when several processes race: the first takes an ``flock`` on
    ``<key>.lock``, installs into a private staging folder and renames it into place; the
    others wait on the lock and then find the finished folder. Blocking (seconds on a first
    install): call it from a thread in async code.
    """
    root = cache_root()
    target = root / lock_hash()
    if (target / _COMPLETE).is_file():
        return target
    reason = node_available()
    if reason is not None:
        raise NodeUnavailable(reason)
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"{target.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (target / _COMPLETE).is_file():
                return target
            _install(target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _install(target: Path) -> None:
    staging = target.with_name(f"{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(NODE_DIR / name, staging / name)
        env = {**os.environ, "npm_config_update_notifier": "false"}
        started = time.monotonic()
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=staging,
                env=env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeInstallError(f"npm ci took more than {INSTALL_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise NodeInstallError(f"npm ci failed (exit {done.returncode}) in {staging}:\n{tail}")
        elapsed = time.monotonic() - started
        (staging / _COMPLETE).write_text(f"npm ci {elapsed:.1f} s\n")
        # A folder left by a crash mid-rename has no marker: replace it.
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _script(root: Path, name: str) -> Path:
    """``root/scripts/<content hash>/<file>``: the server's source as of this checkout."""
    try:
        filename = SERVERS[name]
    except KeyError:
        raise ValueError(f"unknown Node server {name!r}; known: {sorted(SERVERS)}") from None
    source = (NODE_DIR / filename).read_bytes()
    path = root / "scripts" / hashlib.sha256(source).hexdigest()[:16] / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{filename}.tmp-{os.getpid()}")
        tmp.write_bytes(source)
        tmp.replace(path)  # atomic: a racing process writes the same bytes
    return path


async def launch(
    name: str,
    provider_url: str,
    log_dir: Path,
    *,
    args: Sequence[str] = (),
    ready_timeout_s: float = 30.0,
) -> ManagedProcess:
    """Start server ``name`` (a key of :data:`SERVERS`) on a free port of 127.0.0.1.

    ``provider_url`` is the provider's base URL ending in ``/v1``. The caller must
    ``await proc.stop()``; ``proc.url`` is the server's root URL. Installs on first use.
    """
    reason = node_available()
    if reason is not None:
        raise NodeUnavailable(reason)
    root = await asyncio.to_thread(ensure_installed)
    script = _script(root, name)
    node = shutil.which("node") or "node"
    return await start_process(
        name,
        [node, str(script), "--port", "0", "--provider-url", provider_url, *args],
        log_dir=log_dir,
        ready_timeout_s=ready_timeout_s,
    )


@contextlib.asynccontextmanager
async def start(name: str, provider_url: str, log_dir: Path) -> AsyncIterator[str]:
    """``async with start("ai_sdk_ui", mock + "/v1", tmp) as url:`` the server's root URL."""
    proc = await launch(name, provider_url, log_dir)
    try:
        assert proc.url is not None
        yield proc.url
    finally:
        await proc.stop()
