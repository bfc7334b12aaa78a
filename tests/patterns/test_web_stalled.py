"""In Chromium: a pattern page whose connection stalls (open, letting nothing through) is taken as
offline: it says so, saves its edits over HTTP and connects again.

The page said "Live" for 45 s, until the socket's ping timeout, while the person's taps reached
nobody and nothing saved them; another player's list dropped them meanwhile (audit
"patternfield"). An edit unanswered for the acknowledgement's time (10 s) now ends that."""

from __future__ import annotations

import asyncio

from playwright.async_api import expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, step, stored_steps

BOUND_S = 30.0


async def test_a_stalled_connection_is_said_and_its_edits_are_saved_over_http(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    badge = page.locator("#connection")
    await expect(badge).to_have_text("Live")
    gate.mute()  # the network freezes: no close, no error
    await step(page, "t1", 6).click()
    await gate.until_kept("pattern_op")
    await expect(badge).not_to_have_text("Live", timeout=BOUND_S * 1000)  # said offline, reconnecting
    await step(page, "t1", 9).click()  # made while it does not answer
    deadline = asyncio.get_running_loop().time() + BOUND_S
    while not ((steps := await stored_steps(server, session_id))[6] and steps[9]):  # saved over HTTP
        assert asyncio.get_running_loop().time() < deadline, steps
        await asyncio.sleep(0.1)
    gate.unmute()  # the network back
    await expect(badge).to_have_text("Live", timeout=BOUND_S * 1000)
    steps = await stored_steps(server, session_id)
    assert steps[6] and steps[9] and sum(steps) == 2, steps  # each once, nothing else
