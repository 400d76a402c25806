"""The browser driver's wait for one answer, on a stand-in page whose frames reach the harness
late: with 20 Chromium pages on a loaded 2-core machine, Playwright reported a page's
WebSocket frames seconds after the page had shown and saved the answer."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

from scenarios.browser.page import Frame, PageLog
from scenarios.drivers.base import StreamState
from scenarios.drivers.browser import ASSISTANT, ERROR, one_message
from scenarios.plan import ClientPlan

ANSWER = ["Hello", " world"]
TIMEOUT_S = 0.3  # the message's deadline, from sending it
FRAMES_LAG_S = 1.0  # past the deadline, well within the driver's catch-up allowance


class _Locator:
    def __init__(self, page: LaggingPage, selector: str) -> None:
        self.page, self.selector = page, selector

    async def count(self) -> int:
        return 0

    def nth(self, index: int) -> _Locator:
        return self

    async def wait_for(self, state: str, **options: float) -> None:
        if self.selector == ASSISTANT:
            await self.page.saved.wait()
        else:
            assert self.selector == ERROR
            await asyncio.Event().wait()  # the page shows no error


class LaggingPage:
    """A page that saves the answer at once, while the frames that carried it are reported
    to the harness ``FRAMES_LAG_S`` later."""

    def __init__(self, log: PageLog) -> None:
        self.log = log
        self.saved = asyncio.Event()

    async def wait_for_selector(self, selector: str, **options: float) -> None:
        return None

    def locator(self, selector: str) -> _Locator:
        return _Locator(self, selector)

    async def fill(self, selector: str, text: str) -> None:
        return None

    async def click(self, selector: str) -> None:
        self._frame(sent=True, payload=json.dumps({"type": "chat"}))
        self.saved.set()
        loop = asyncio.get_running_loop()
        for token in ANSWER:
            payload = json.dumps({"type": "token", "content": token})
            loop.call_later(FRAMES_LAG_S, self._frame, False, payload)
        loop.call_later(FRAMES_LAG_S, self._frame, False, json.dumps({"type": "end"}))

    def _frame(self, sent: bool, payload: str) -> None:
        self.log.frames.append(Frame(time.perf_counter(), time.time(), 0, sent, payload))

    async def eval_on_selector_all(self, selector: str, script: str) -> list[list[str]]:
        return [["assistant", "".join(ANSWER)]] if self.saved.is_set() else []

    async def evaluate(self, script: str) -> list[Any]:
        return []


def test_frames_reported_after_the_deadline_still_count_once_the_page_saved_its_answer() -> None:
    plan = ClientPlan(0, "tabs", 0, "c0", "browser", 0.0, (), ("hi",))
    state = StreamState(plan, 0)
    ctx = SimpleNamespace(
        plan=plan,
        group=SimpleNamespace(timeout_s=TIMEOUT_S),
        track=lambda s, record: s.records.append(record),
    )

    async def drive() -> None:
        log = PageLog()
        page = LaggingPage(log)
        await one_message(ctx, page, log, state, "tutorial", time.perf_counter() + 60)

    asyncio.run(asyncio.wait_for(drive(), 30))
    [record] = state.records
    assert record.outcome == "completed", (record.outcome, state.notes)
    assert record.text == "".join(ANSWER)
    assert state.saved == "".join(ANSWER)
