"""pytest plugin (``pytest11`` entry point ``streamharness_browser``): your frontend in Chromium.

Fixtures (``pytest --fixtures`` describes them):

- ``browser_chromium`` (session): Debian's Chromium (``/usr/bin/chromium``, or
  ``$STREAMHARNESS_CHROMIUM``) driven by Playwright's sync API; tests that use it are skipped
  with the reason when it is missing;
- ``browser_page`` (function): :class:`BrowserPages`: ``open(url)`` opens your frontend in a
  fresh browser context and records what its WebSockets received and what its streaming
  element showed; ``fault_proxy(url)`` puts the embedded fault proxy in front of your server
  (its toxics, e.g. a reset, cut the page's connection); ``mock`` is the ``mockllm`` fixture
  your server should call as its provider::

      def test_the_page_saves_the_whole_answer(browser_page, my_server):
          page = browser_page.open(my_server.url)
          page.page.fill("#prompt", "hi")
          page.page.click("text=Send")
          ...
          assert page.text("#answer") == browser_page.mock.requests()[0]["text"]

A separate plugin from ``mockllm``'s own (``mockllm`` imports nothing of this project's other
packages); it needs the ``mockllm`` fixture, which installing streamharness also registers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from mockllm.childproc import Child, start_child, stop_process
from mockllm.client import MockAdmin
from scenarios.browser.chromium import chromium_path, chromium_unavailable
from scenarios.browser.page import STREAMING, recorder_script

__all__ = ["BrowserPages", "FaultProxy", "RecordedPage", "browser_chromium", "browser_page"]


@dataclass
class RecordedPage:
    """One page of your frontend, with what its WebSockets carried and what it showed."""

    page: Any  # playwright.sync_api.Page
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)  # the URL of each WebSocket it opened

    def shown(self) -> list[tuple[float, str]]:
        """Each text the streaming element showed, with the page's clock (epoch seconds)."""
        raw = self.page.evaluate("window.__streamharness ? window.__streamharness.shown : []")
        return [(float(t) / 1000.0, str(text)) for t, text in raw]

    def text(self, selector: str) -> str:
        """The element's text exactly (``textContent``: whitespace and newlines kept)."""
        value: str = self.page.eval_on_selector(selector, "e => e.textContent")
        return value


@dataclass
class FaultProxy:
    """The embedded fault proxy in front of one server: open ``url`` instead of the
    server's. Toxics take the Toxiproxy names and attributes (docs/faultproxy.md)."""

    url: str
    api: Any  # scenarios.faultproxy.client.ToxiproxyClient
    name: str

    def add_toxic(self, type: str, *, stream: str = "downstream", **attributes: int) -> str:
        return str(self.api.add_toxic(self.name, type, stream=stream, attributes=attributes).name)

    def remove_toxic(self, name: str) -> None:
        self.api.remove_toxic(self.name, name)

    def cut(self, duration_s: float = 0.1) -> None:
        """Reset every connection through the proxy (TCP RST) for ``duration_s``: a page's
        WebSocket drops and reconnects after it."""
        name = self.add_toxic("reset_peer", timeout=0)
        try:
            time.sleep(duration_s)  # the fault's own length, not a wait for a condition
        finally:
            self.remove_toxic(name)


class BrowserPages:
    """What ``browser_page`` gives a test (see the module docstring)."""

    def __init__(self, browser: Any, mock: MockAdmin, streaming: str = STREAMING) -> None:
        self.browser = browser
        self.mock = mock
        self.streaming = streaming
        self._contexts: list[Any] = []
        self._proxy: Child | None = None
        self._proxies = 0

    def open(
        self, url: str, *, streaming: str | None = None, viewport: dict[str, int] | None = None
    ) -> RecordedPage:
        """Open ``url`` in a new browser context (its own cookies and storage) and record it.
        ``streaming``: the CSS selector of the element that shows the streaming answer."""
        context = self.browser.new_context(viewport=viewport or {"width": 1000, "height": 800})
        self._contexts.append(context)
        page = context.new_page()
        page.add_init_script(recorder_script(streaming or self.streaming))
        recorded = RecordedPage(page)

        def on_socket(ws: Any) -> None:
            recorded.sockets.append(ws.url)
            ws.on("framereceived", lambda p: recorded.received.append(_text(p)))
            ws.on("framesent", lambda p: recorded.sent.append(_text(p)))

        page.on("websocket", on_socket)
        page.goto(url)
        return recorded

    def fault_proxy(self, server_url: str) -> FaultProxy:
        """The embedded fault proxy between the pages and ``server_url`` (started on first
        use, stopped after the test); its ``url`` is ``server_url`` through the proxy."""
        from scenarios.faultproxy.client import ToxiproxyClient

        if self._proxy is None:
            self._proxy = start_child(
                [sys.executable, "-m", "scenarios.faultproxy", "--host", "127.0.0.1", "--port", "0"]
            )
        api = ToxiproxyClient(self._proxy.url)
        parts = urlsplit(server_url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(
                f"give the server's URL with its port, e.g. http://127.0.0.1:8000 "
                f"(got {server_url!r})"
            )
        self._proxies += 1
        name = f"browser_page_{self._proxies}"
        info = api.create_proxy(name, f"{parts.hostname}:{parts.port}")
        url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{info.port}"))
        return FaultProxy(url, api, name)

    def close(self) -> None:
        for context in self._contexts:
            context.close()
        self._contexts.clear()
        if self._proxy is not None:
            stop_process(self._proxy.proc)
            self._proxy = None


def _text(payload: str | bytes) -> str:
    return payload if isinstance(payload, str) else payload.decode("utf-8", "replace")


@pytest.fixture(scope="session")
def browser_chromium() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright's sync API (one per test session; never a
    Playwright browser download). Skipped with the reason when Chromium is missing."""
    reason = chromium_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium_path()))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(browser_chromium: Any, mockllm: MockAdmin) -> Iterator[BrowserPages]:
    """Your frontend in Chromium with the mock provider (``browser_page.mock``, the
    ``mockllm`` fixture: point your server at ``mockllm.base_url``) and, on demand, the fault
    proxy (``browser_page.fault_proxy(server_url)``). ``browser_page.open(url)`` returns a
    :class:`RecordedPage`: the Playwright ``page``, every WebSocket frame it ``received`` and
    ``sent``, and ``shown()``: each text its streaming element (``[data-testid="streaming"]``
    unless ``open(url, streaming=...)`` names another) showed, with when."""
    pages = BrowserPages(browser_chromium, mockllm)
    try:
        yield pages
    finally:
        pages.close()
