"""In Chromium: a stream dashboard's Start whose answer was lost is sent again and read as done.

The streamer presses Start; the server opens the segment; the answer never comes back and the
connection drops. The dashboard, connected again, sends Start again: the server refuses it
invalid_state naming "active", the state Start moves to (PROTOCOL, Sending a write again), and
the page takes that as Start done: no "start failed", one segment. Before, the page said "start
failed: The connection was lost before the server answered." and a second press was refused.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web_op_retry import DeafGate
from tests.streams.helpers import create_stream, http
from tests.test_web_stalled_actions import live


async def state_of(server: ServerUnderTest, session_id: str) -> tuple[str, int]:
    status, body = await http(server, "GET", f"/api/streams/{session_id}")
    assert status == 200, body
    session = body.get("session", body)
    return str(session["state"]), len(session["segments"])


async def test_start_whose_answer_was_lost_is_sent_again_and_taken_as_done(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await create_stream(server, title="Lossy start")
    gate = DeafGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    dashboard = await live(tab, f"/streams/{session_id}")

    gate.deaf = True  # Start reaches the server; its answer never comes back
    await dashboard.locator("#action-start").click()
    for _ in range(200):  # a predicate on Redis, polled
        if (await state_of(server, session_id))[0] == "active":
            break
        await asyncio.sleep(0.05)
    assert await state_of(server, session_id) == ("active", 1)

    await gate.cut()  # the connection drops; the page connects again and sends Start again
    gate.deaf = False
    gate.release()
    await expect(dashboard.locator("#connection")).to_have_attribute("data-state", "live")
    for _ in range(200):  # the resend's answer: invalid_state, naming "active"
        if any('"invalid_state"' in m for m in gate.heard):
            break
        await asyncio.sleep(0.05)
    assert any('"state":"active"' in m and '"invalid_state"' in m for m in gate.heard), gate.heard[-5:]
    await expect(dashboard.locator("#notice")).to_be_hidden()
    await expect(dashboard.locator("#action-pause")).to_be_visible()
    assert await state_of(server, session_id) == ("active", 1)
    assert not tab.errors, tab.errors
