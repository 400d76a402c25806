"""Node chat servers for the harness to judge: the Vercel AI SDK and Express with ``openai``.

The servers live in ``tests/targets/node/`` (``package.json`` and ``package-lock.json`` pin
every version). :func:`ensure_installed` runs ``npm ci`` from the committed lock into a cache
outside the repository (:mod:`scenarios.npmcache`), keyed by the hash of ``package.json`` and
the lock, so the repository never holds ``node_modules`` and a second run costs nothing.
:func:`start` copies a server's ``.mjs`` into that folder (Node resolves ESM imports by walking
up from the script; it ignores ``NODE_PATH``) and runs it as a real process with
:func:`scenarios.stack.procs.start_process`.

Servers (each ``POST /api/chat``; see the comments at the top of each ``.mjs``):

- ``ai_sdk_ui``: ``streamText`` + ``pipeUIMessageStreamToResponse`` (ai 6, UI message stream);
- ``express_openai``: Express 4 + the ``openai`` package, SSE ``data: {"content": ...}``, with
  the two flaws of the blog posts (a provider drop kills the process; a client that leaves
  does not stop the provider request).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from scenarios import npmcache
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
INSTALL_TIMEOUT_S = npmcache.INSTALL_TIMEOUT_S
NodeUnavailable = npmcache.NodeUnavailable
NodeInstallError = npmcache.NodeInstallError
node_available = npmcache.node_available
_CACHE_NAME = "node-targets"


def cache_root() -> Path:
    """``$STREAMHARNESS_NODE_CACHE/node-targets``, else ``~/.cache/streamharness/node-targets``."""
    return npmcache.cache_root(_CACHE_NAME)


def lock_hash() -> str:
    """The install's key: sha256 of ``package.json`` and ``package-lock.json`` (16 hex)."""
    return npmcache.lock_hash(NODE_DIR)


def ensure_installed() -> Path:
    """The folder holding ``node_modules`` for the committed lock (:mod:`scenarios.npmcache`)."""
    return npmcache.ensure_installed(NODE_DIR, _CACHE_NAME)


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
