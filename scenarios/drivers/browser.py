"""Browser pages as clients (``kind: browser``): a real Chromium page per client runs one of
the bundled frontends (:mod:`scenarios.browser`) against the target.

Each page: open the frontend with the target's WebSocket URL in its address, wait for it to
connect, then per message type the prompt, press Enter, and follow what the page's WebSocket
receives (into the stream's record, as any client's) until the page saves the answer in its
history, shows an error, or the group's ``timeout_s`` runs out. What the page showed while
streaming and what it saved go to the stream's state for the browser checks; the page's
final screenshot goes to the report.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import urlencode

from scenarios.browser.frames import TutorialPageReader, V1PageReader
from scenarios.browser.page import PageLog, attach, history, recorder_script, shown
from scenarios.browser.session import session_of
from scenarios.clients.records import StreamRecord
from scenarios.drivers.base import ClientContext, StreamState, TargetUnreachable
from scenarios.profiles.schema import Profile

__all__ = ["drive_browser", "one_message", "page_client", "submit"]

VIEWPORT = {"width": 900, "height": 700}
# How often the frames Playwright reported are read into the record (no DevTools call).
POLL_S = 0.02
# After the page saved its answer: how long the harness waits for the frames it was told of
# to catch up (Playwright reports them over the same DevTools connection, behind the page:
# seconds with 20 pages on a loaded 2-core machine).
CATCH_UP_S = 5.0
# Added to ``timeout_s`` for the page to connect before a message is sent.
CONNECT_GRACE_S = 5.0
STATUS_OPEN = '[data-testid="status"][data-state="open"]'
PROMPT = '[data-testid="prompt"]'
SEND_ENABLED = '[data-testid="send"]:not([disabled])'
PROMPT_EMPTY = f"() => document.querySelector({PROMPT!r}).value === ''"
# How long a page has to empty its input after Enter before the key counts as ignored.
SUBMIT_CHECK_S = 1.0
ASSISTANT = '[data-testid="history"] [data-testid="message"][data-role="assistant"]'
ERROR = '[data-testid="error"]'


def page_client(group_client: str, profile: Profile) -> str | None:
    """The frontend a page runs against a target with ``profile``; None: none speaks it."""
    if group_client != "auto":
        return group_client
    if profile.protocol == "v1":
        return "v1"
    if profile.name == "tutorial":
        return "tutorial"
    return None


async def drive_browser(ctx: ClientContext) -> None:
    client = page_client(ctx.group.page.client, ctx.profile)
    if client is None:  # the runner skips such a scenario first
        raise TargetUnreachable(f"no browser client speaks profile {ctx.profile.name!r}")
    session = await session_of(ctx.live)
    context = await session.context_of(ctx.plan.group_name, VIEWPORT)
    page = await context.new_page()
    try:
        await page.add_init_script(recorder_script())
        log = PageLog()
        attach(page, log)
        # A script error on the page is part of what the user saw: noted on the stream.
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        await page.goto(f"{session.pages_url}/{client}.html?{_query(ctx, client)}")
        slowdown = ctx.group.page.cpu_slowdown
        if slowdown > 1:
            # Once loaded: a throttled page load would cost seconds and show nothing.
            cdp = await context.new_cdp_session(page)
            await cdp.send("Emulation.setCPUThrottlingRate", {"rate": slowdown})
        for m in range(ctx.group.messages):
            await ctx.think(m)
            state = ctx.new_state(m)
            state.page = client
            await one_message(ctx, page, log, state, client)
            state.notes.extend(f"page error: {e}" for e in page_errors)
            page_errors.clear()
        await _screenshot(ctx, page, log)
    finally:
        await page.close()


def _query(ctx: ClientContext, client: str) -> str:
    params = {"ws": ctx.endpoints.ws_url, "model": ctx.model}
    if ctx.group.page.id_in_url:
        params["id"] = ctx.plan.url_id
    if not ctx.group.page.render_per_message:
        params["filter"] = "skip"
    return urlencode(params)


async def one_message(
    ctx: ClientContext,
    page: Any,
    log: PageLog,
    state: StreamState,
    client: str,
) -> None:
    """Send ``state``'s prompt on ``page`` and follow its answer into a new record of
    ``state``: until the page saved it (and the frames it was told of caught up), shows an
    error, or ``timeout_s`` from sending passes before the page saved anything. The page
    first gets ``timeout_s`` (and ``CONNECT_GRACE_S``) to show that it is connected: on a
    loaded machine a page's start-up is the machine's time, not the target's."""
    record = StreamRecord(transport="browser", id=f"{ctx.plan.client_id}-m{state.message}")
    try:
        await page.wait_for_selector(
            STATUS_OPEN, timeout=(ctx.group.timeout_s + CONNECT_GRACE_S) * 1000
        )
    except Exception:
        state.notes.append("the page never connected")
        ctx.track(state, record)
        record.finish("timeout", time.perf_counter())
        return
    answers = page.locator(ASSISTANT)
    saved_before = await answers.count()
    await page.fill(PROMPT, state.prompt)
    mark = len(log.frames)
    sockets_before = len(log.sockets)
    record.sent_at, record.sent_at_epoch = time.perf_counter(), time.time()
    submitted_epoch = record.sent_at_epoch
    ctx.track(state, record)
    if not await submit(page, time.perf_counter() + ctx.group.timeout_s + CONNECT_GRACE_S):
        state.notes.append("the page never took the message (its Send button stayed disabled)")
    # The stream's time starts when the page took the message, not when it began loading.
    deadline = time.perf_counter() + ctx.group.timeout_s
    reader: TutorialPageReader | V1PageReader = (
        V1PageReader(record) if client == "v1" else TutorialPageReader(record, record.sent_at)
    )
    # The page is watched from inside (Playwright polls the DOM in the page), so waiting
    # costs no DevTools round trip per poll.
    wait_ms = max(1.0, deadline - time.perf_counter()) * 1000
    saved = asyncio.ensure_future(
        answers.nth(saved_before).wait_for(state="attached", timeout=wait_ms)
    )
    failed = asyncio.ensure_future(page.locator(ERROR).wait_for(state="attached", timeout=wait_ms))
    seen = mark
    sent_seen = False
    early = 0
    saved_at: float | None = None
    try:
        while True:
            for frame in log.frames[seen:]:
                if frame.sent:
                    if not sent_seen:
                        # The request left when the page sent it, not when the harness
                        # began its key press (Playwright waits for the input first).
                        sent_seen = True
                        record.sent_at, record.sent_at_epoch = frame.t, frame.epoch
                        state.sent_at, state.sent_at_epoch = frame.t, frame.epoch
                    if isinstance(reader, V1PageReader):
                        reader.sent(frame.payload)
                elif not sent_seen:
                    # Before the page sent this message: not its answer (another tab's
                    # tokens on a shared id, the rest of the previous answer).
                    early += 1
                else:
                    reader.feed(frame.payload, frame.t)
            seen = len(log.frames)
            now = time.perf_counter()
            if saved_at is None and _succeeded(saved):
                saved_at = now
            if saved_at is not None and (record.done or now - saved_at > CATCH_UP_S):
                break
            if record.done and _succeeded(failed):
                break
            if now >= deadline and saved_at is None:
                # Once the page has saved its answer, the wait is for the harness's own
                # reports to catch up (above), which is not the target's time to spend.
                break
            await asyncio.sleep(POLL_S)
    finally:
        for task in (saved, failed):
            task.cancel()
        await asyncio.gather(saved, failed, return_exceptions=True)
    if isinstance(reader, V1PageReader):
        state.dedupe_from = reader.new_generation
        state.errors_seen.extend(reader.errors_seen)
    elif reader.stray:
        state.notes.append(f"{reader.stray} frames arrived after the end")
    if early:
        state.notes.append(f"{early} frames arrived after the prompt was typed, before it was sent")
    if not record.done:
        record.finish("timeout", time.perf_counter())
    reconnects = len(log.sockets) - sockets_before
    if reconnects:
        state.notes.append(f"the page opened {reconnects} new WebSocket(s) during the answer")
    messages = await history(page)
    texts = [text for role, text in messages if role == "assistant"]
    if len(texts) > saved_before:
        state.saved = texts[saved_before]
    state.shown = [(t, text) for t, text in await shown(page) if t >= submitted_epoch]


async def submit(page: Any, until: float) -> bool:
    """Press Enter in the prompt until the page takes the message (its form empties the
    input), as a person presses again; False if ``until`` passes first.

    Enter submits the form as the Send button does. A click would first wait for the button
    to stay still, and on a page whose streaming text grows (another tab's tokens on a shared
    id) it moves for seconds. But a form whose Send button is disabled ignores Enter, and the
    connection can drop (a server restart) between the check and the key, so the key is
    pressed again once the button is enabled.
    """
    while True:
        await page.press(PROMPT, "Enter")
        try:
            await page.wait_for_function(PROMPT_EMPTY, timeout=SUBMIT_CHECK_S * 1000)
            return True
        except Exception:  # Playwright's TimeoutError: the form did not take it
            pass
        left = until - time.perf_counter()
        if left <= 0:
            return False
        try:
            await page.wait_for_selector(SEND_ENABLED, timeout=left * 1000)
        except Exception:
            return False


def _succeeded(task: asyncio.Future[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def _screenshot(ctx: ClientContext, page: Any, log: PageLog) -> None:
    """Keep the group's most telling page: the one whose WebSocket received the most."""
    received = len(log.received())
    name = ctx.plan.group_name
    best = ctx.live.screenshots.get(name)
    if best is not None and best[0] >= received:
        return
    png: bytes = await page.screenshot(full_page=True)
    current = ctx.live.screenshots.get(name)
    if current is None or current[0] < received:
        ctx.live.screenshots[name] = (received, png)
