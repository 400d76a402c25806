"""Node packages from a committed lock file, installed once into a cache outside the repository.

A folder holding ``package.json`` and ``package-lock.json`` (the browser clients of
``scenarios/browser/frontend/``, the Node servers of ``tests/targets/node/``) is installed with
``npm ci`` into ``<cache>/<name>/<hash of both files>/``, so the repository never holds
``node_modules`` and a second run costs nothing. Several processes may race: the first takes
an ``flock``, installs into a private staging folder and renames it into place.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from scenarios.errors import HarnessError

__all__ = [
    "MIN_NODE",
    "NodeInstallError",
    "NodeUnavailable",
    "cache_root",
    "ensure_installed",
    "lock_hash",
    "node_available",
]

# What the pinned packages declare (ai 6: >= 18, its undici: >= 18.17). Measured on Node 20;
# Debian 12's own nodejs is 18.20, Debian 13's is 20.19.
MIN_NODE = (18, 17)
INSTALL_TIMEOUT_S = 600.0
_COMPLETE = ".streamharness-complete"
_LOCK_FILES = ("package.json", "package-lock.json")


class NodeUnavailable(HarnessError):
    """``node`` or ``npm`` is missing or too old; ``str(exc)`` says which."""


class NodeInstallError(HarnessError):
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


def cache_root(name: str) -> Path:
    """``$STREAMHARNESS_NODE_CACHE``, else ``$XDG_CACHE_HOME/streamharness``, then ``name``."""
    explicit = os.environ.get("STREAMHARNESS_NODE_CACHE")
    if explicit:
        return Path(explicit) / name
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "streamharness" / name


def lock_hash(package_dir: Path) -> str:
    """The install's key: sha256 of ``package.json`` and ``package-lock.json`` (16 hex)."""
    digest = hashlib.sha256()
    for name in _LOCK_FILES:
        digest.update(name.encode() + b"\0" + (package_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure_installed(package_dir: Path, name: str) -> Path:
    """The folder holding ``node_modules`` for ``package_dir``'s lock; ``npm ci`` on first use.

    Blocking (seconds on a first install): call it from a thread in async code.
    """
    root = cache_root(name)
    target = root / lock_hash(package_dir)
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
            _install(package_dir, target)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def _install(package_dir: Path, target: Path) -> None:
    staging = target.with_name(f"{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for name in _LOCK_FILES:
            shutil.copyfile(package_dir / name, staging / name)
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
