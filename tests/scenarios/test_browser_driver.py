"""The browser driver's wait for one answer, on stand-in pages that are late the way Chromium
pages were on a loaded 2-core machine with 20 of them open: Playwright reported a page's
WebSocket frames seconds after the page had shown and saved the answer, and pages took many
seconds to connect."""

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
    """A page that connects ``connect_s`` after it is asked to and, once sent a message,
    saves the answer ``answer_s`` later, while the frames that carried it are reported to the
    harness ``frames_lag_s`` after that."""

    def __init__(
        self,
        log: PageLog,
        connect_s: float = 0.0,
        answer_s: float = 0.0,
        frames_lag_s: float = 0.0,
        ignored_presses: int = 0,
    ) -> None:
        self.log = log
        self.saved = asyncio.Event()
        self.connect_s, self.answer_s, self.frames_lag_s = connect_s, answer_s, frames_lag_s
        # Enter pressed while the Send button is disabled (the connection just dropped).
        self.ignored_presses = ignored_presses
        self.presses = 0
        self.taken = False

    async def wait_for_selector(self, selector: str, **options: float) -> None:
        await asyncio.sleep(self.connect_s)  # the page's own start-up, simulated

    def locator(self, selector: str) -> _Locator:
        return _Locator(self, selector)

    async def fill(self, selector: str, text: str) -> None:
        return None

    async def wait_for_function(self, script: str, **options: float) -> None:
        if not self.taken:
            raise TimeoutError("the prompt still holds the message")

    async def press(self, selector: str, key: str) -> None:
        assert key == "Enter"
        self.presses += 1
        if self.presses <= self.ignored_presses:
            return
        assert not self.taken, "Enter pressed again after the page took the message"
        self.taken = True
        self._frame(sent=True, payload=json.dumps({"type": "chat"}))
        loop = asyncio.get_running_loop()
        loop.call_later(self.answer_s, self.saved.set)
        lag = self.answer_s + self.frames_lag_s
        for token in ANSWER:
            payload = json.dumps({"type": "token", "content": token})
            loop.call_later(lag, self._frame, False, payload)
        loop.call_later(lag, self._frame, False, json.dumps({"type": "end"}))

    def _frame(self, sent: bool, payload: str) -> None:
        self.log.frames.append(Frame(time.perf_counter(), time.time(), 0, sent, payload))

    async def eval_on_selector_all(self, selector: str, script: str) -> list[list[str]]:
        return [["assistant", "".join(ANSWER)]] if self.saved.is_set() else []

    async def evaluate(self, script: str) -> list[Any]:
        return []


def _one_message(timeout_s: float = TIMEOUT_S, **lateness: Any) -> tuple[StreamState, LaggingPage]:
    plan = ClientPlan(0, "tabs", 0, "c0", "browser", 0.0, (), ("hi",))
    state = StreamState(plan, 0)
    ctx = SimpleNamespace(
        plan=plan,
        group=SimpleNamespace(timeout_s=timeout_s),
        track=lambda s, record: s.records.append(record),
    )
    log = PageLog()
    page = LaggingPage(log, **lateness)
    asyncio.run(asyncio.wait_for(one_message(ctx, page, log, state, "tutorial"), 30))
    return state, page


def test_frames_reported_after_the_deadline_still_count_once_the_page_saved_its_answer() -> None:
    state, _ = _one_message(frames_lag_s=FRAMES_LAG_S)
    [record] = state.records
    assert record.outcome == "completed", (record.outcome, state.notes)
    assert record.text == "".join(ANSWER)
    assert state.saved == "".join(ANSWER)


def test_a_page_slow_to_connect_still_gets_the_whole_timeout_from_sending() -> None:
    # Connecting takes longer than the message's timeout; the answer comes well within the
    # timeout counted from sending (0.8 s to spare, for a loaded machine's timers). Counted
    # from the page's start, it would time out.
    state, _ = _one_message(timeout_s=1.0, connect_s=1.5, answer_s=0.2)
    [record] = state.records
    assert record.outcome == "completed", (record.outcome, state.notes)
    assert state.saved == "".join(ANSWER)


def test_a_page_that_answers_too_late_times_out() -> None:
    state, _ = _one_message(answer_s=TIMEOUT_S + 0.7)
    [record] = state.records
    assert record.outcome == "timeout" and state.saved is None


def test_enter_pressed_while_the_page_ignores_it_is_pressed_again() -> None:
    state, page = _one_message(ignored_presses=2)
    [record] = state.records
    assert record.outcome == "completed", (record.outcome, state.notes)
    assert state.saved == "".join(ANSWER) and page.presses == 3
