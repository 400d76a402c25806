"""The browser clients, bundled: ``npm ci`` from the committed lock, then ``esbuild``.

The installed packages live in ``~/.cache/streamharness/browser-clients/<lock hash>/``
(:mod:`scenarios.npmcache`); each bundle in ``bundles/<hash of the sources>/`` below it,
next to the HTML pages, so the repository holds only the sources and a changed source builds
a new bundle. React is bundled in production mode (what a deployed frontend runs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from scenarios.npmcache import NodeInstallError, ensure_installed

__all__ = ["CLIENTS", "FRONTEND_DIR", "BundleError", "ensure_bundle"]

FRONTEND_DIR = Path(__file__).resolve().parent / "frontend"
CLIENTS = ("tutorial", "v1")
CACHE_NAME = "browser-clients"
BUILD_TIMEOUT_S = 120.0
_COMPLETE = ".streamharness-complete"


class BundleError(NodeInstallError):
    """esbuild failed on the clients' sources; the message has its output."""


def _sources() -> list[Path]:
    files = [FRONTEND_DIR / f"{c}.html" for c in CLIENTS]
    return files + sorted((FRONTEND_DIR / "src").glob("*.js*"))


def sources_hash() -> str:
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.relative_to(FRONTEND_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_bundle() -> Path:
    """The folder serving ``tutorial.html`` and ``v1.html`` with their scripts; built on
    first use (blocking: seconds for ``npm ci``, under a second for esbuild)."""
    installed = ensure_installed(FRONTEND_DIR, CACHE_NAME)
    target = installed / "bundles" / sources_hash()
    if (target / _COMPLETE).is_file():
        return target
    staging = target.with_name(f"{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        # esbuild resolves imports by walking up from each source: the sources sit beside
        # node_modules while they are built.
        src = staging / "src"
        src.mkdir(parents=True)
        for path in _sources():
            shutil.copyfile(path, staging / path.relative_to(FRONTEND_DIR))
        out = staging / "out"
        _esbuild(installed, [src / f"{c}.jsx" for c in CLIENTS], out)
        for client in CLIENTS:
            shutil.copyfile(staging / f"{client}.html", out / f"{client}.html")
        (out / _COMPLETE).write_text("esbuild\n")
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _esbuild(installed: Path, entries: list[Path], out: Path) -> None:
    binary = installed / "node_modules" / ".bin" / "esbuild"
    command = [
        str(binary),
        *map(str, entries),
        "--bundle",
        "--minify",
        "--format=iife",
        "--jsx=automatic",
        "--target=es2020",
        '--define:process.env.NODE_ENV="production"',
        f"--outdir={out}",
        "--log-level=warning",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"esbuild could not run: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise BundleError(f"esbuild failed (exit {done.returncode}):\n{tail}")
