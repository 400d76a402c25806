"""One Debian Chromium per scenario run, driven by Playwright, and the pages' static server.

The clients of a run share it (:func:`session_of` starts it once, on the first page's
request); the runner closes it when the clients are done. Playwright's own browser download
is never used: ``executable_path`` is Debian's ``/usr/bin/chromium`` (or
``$STREAMHARNESS_CHROMIUM``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from scenarios.browser.bundle import CACHE_NAME, FRONTEND_DIR, ensure_bundle, sources_hash
from scenarios.browser.chromium import chromium_path, chromium_unavailable
from scenarios.browser.static import StaticServer
from scenarios.npmcache import cache_root, lock_hash, node_available

__all__ = ["BrowserSession", "browser_unavailable", "session_of"]

_RESOURCE = "browser"


def _bundle_built() -> bool:
    try:
        folder = cache_root(CACHE_NAME) / lock_hash(FRONTEND_DIR) / "bundles" / sources_hash()
    except OSError:
        return False
    return (folder / ".streamharness-complete").is_file()


def browser_unavailable() -> str | None:
    """None when browser pages can run here, else why not (what to install)."""
    reason = chromium_unavailable()
    if reason is not None:
        return reason
    if not _bundle_built():
        reason = node_available()
        if reason is not None:
            return f"the browser clients need building with Node: {reason}"
    return None


@dataclass
class BrowserSession:
    playwright: Any
    browser: Any  # playwright.async_api.Browser
    static: StaticServer
    contexts: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    async def context_of(self, group: str, viewport: dict[str, int]) -> Any:
        """The browser context of a client group, made by its first page: a group's pages
        are tabs of one browser profile (cookies and storage shared, as a user's tabs share
        them), and pages in one context start far faster than one context each (20 pages
        here: about 3 s against 9 s). Closed with the browser."""
        context = self.contexts.get(group)
        if context is None:
            context = asyncio.ensure_future(self.browser.new_context(viewport=viewport))
            self.contexts[group] = context
        return await asyncio.shield(context)

    @property
    def pages_url(self) -> str:
        return self.static.url

    @classmethod
    async def start(cls) -> BrowserSession:
        from playwright.async_api import async_playwright

        folder = await asyncio.to_thread(ensure_bundle)
        static = StaticServer(folder).start()
        try:
            playwright = await async_playwright().start()
        except BaseException:
            static.stop()
            raise
        try:
            browser = await playwright.chromium.launch(executable_path=str(chromium_path()))
        except BaseException:
            await playwright.stop()
            static.stop()
            raise
        return cls(playwright, browser, static)

    async def close(self) -> None:
        try:
            await self.browser.close()
        finally:
            try:
                await self.playwright.stop()
            finally:
                self.static.stop()


async def session_of(live: Any) -> BrowserSession:
    """The run's browser (``live`` is the runner's :class:`~scenarios.drivers.base.Live`),
    started by the first caller; the others wait for it."""
    task = live.resources.get(_RESOURCE)
    if task is None:
        task = asyncio.ensure_future(BrowserSession.start())
        live.resources[_RESOURCE] = task

        async def close() -> None:
            if not task.done():
                task.cancel()
            try:
                session = await task
            except BaseException:
                return
            await session.close()

        live.closers.append(close)
    session: BrowserSession = await asyncio.shield(task)
    return session
