"""What a browser page showed and what its WebSocket received, recorded from outside the page.

:func:`attach` hooks a Playwright page before it loads: every WebSocket the page opens is
logged with each frame it received or sent (Playwright's ``framereceived``/``framesent``
events, stamped with ``perf_counter`` and ``time.time`` when they reach the harness), and an
init script records every text the page's streaming element shows, with the page's clock
(epoch milliseconds), as a ``MutationObserver`` sees it after each DOM change. The page
exposes what it shows by ``data-testid`` attributes (``streaming``, ``history`` /
``message`` with ``data-role``, ``status`` with ``data-state``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Page, WebSocket

__all__ = ["Frame", "PageLog", "SocketLog", "attach", "recorder_script"]

STREAMING = '[data-testid="streaming"]'
HISTORY_ITEMS = '[data-testid="history"] [data-testid="message"]'


_RECORDER = """
(() => {
  if (window.__streamharness) return;
  const shown = [];
  window.__streamharness = { shown };
  let last = null;
  const look = () => {
    const el = document.querySelector(__SELECTOR__);
    const text = el ? el.textContent : null;
    if (text !== null && text !== last) {
      last = text;
      shown.push([performance.timeOrigin + performance.now(), text]);
    }
  };
  new MutationObserver(look).observe(document, {
    subtree: true, childList: true, characterData: true,
  });
})();
"""


def recorder_script(streaming_selector: str = STREAMING) -> str:
    """The init script that records each text the streaming element shows (and when)."""
    return _RECORDER.replace("__SELECTOR__", json.dumps(streaming_selector))


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame as Playwright reported it to the harness."""

    t: float  # perf_counter when the event reached the harness
    epoch: float  # time.time() then
    socket: int  # which of the page's sockets (0 = the first it opened)
    sent: bool  # False: received from the server
    payload: str


@dataclass
class SocketLog:
    url: str
    opened_at: float
    closed_at: float | None = None


@dataclass
class PageLog:
    """Every socket of a page and every frame, in the order the harness saw them."""

    sockets: list[SocketLog] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)

    def received(self, since: int = 0) -> list[Frame]:
        return [f for f in self.frames[since:] if not f.sent]

    @property
    def open_sockets(self) -> int:
        return sum(1 for s in self.sockets if s.closed_at is None)


def attach(page: Page, log: PageLog) -> None:
    """Log ``page``'s WebSockets into ``log`` (call before ``page.goto``)."""

    def on_socket(ws: WebSocket) -> None:
        number = len(log.sockets)
        entry = SocketLog(ws.url, time.perf_counter())
        log.sockets.append(entry)

        def frame(sent: bool) -> Any:
            def record(payload: str | bytes) -> None:
                text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
                log.frames.append(Frame(time.perf_counter(), time.time(), number, sent, text))

            return record

        def closed(_: WebSocket) -> None:
            entry.closed_at = time.perf_counter()

        ws.on("framereceived", frame(False))
        ws.on("framesent", frame(True))
        ws.on("close", closed)

    page.on("websocket", on_socket)


async def shown(page: Page) -> list[tuple[float, str]]:
    """Every (epoch seconds, text) the streaming element showed so far."""
    raw = await page.evaluate("window.__streamharness ? window.__streamharness.shown : []")
    return [(float(t) / 1000.0, str(text)) for t, text in raw]


async def history(page: Page, selector: str = HISTORY_ITEMS) -> list[tuple[str, str]]:
    """The saved history as shown: (role, text) per message."""
    items = await page.eval_on_selector_all(
        selector, "els => els.map(e => [e.dataset.role || '', e.textContent])"
    )
    return [(str(role), str(text)) for role, text in items]
