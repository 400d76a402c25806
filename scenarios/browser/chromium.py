"""Where Debian's Chromium is, and whether pages can run here (no Playwright import)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["DEFAULT_CHROMIUM", "chromium_path", "chromium_unavailable"]

DEFAULT_CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> Path:
    """``$STREAMHARNESS_CHROMIUM``, else Debian's ``/usr/bin/chromium``."""
    return Path(os.environ.get("STREAMHARNESS_CHROMIUM") or DEFAULT_CHROMIUM)


def chromium_unavailable() -> str | None:
    """None when Chromium and the playwright package are here, else what to install."""
    chromium = chromium_path()
    if not (chromium.is_file() and os.access(chromium, os.X_OK)):
        return (
            f"Chromium not found at {chromium} (Debian: apt-get install chromium, as "
            "scripts/bootstrap.sh does; or set STREAMHARNESS_CHROMIUM)"
        )
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install 'streamharness[browser]')"
    return None
