"""In Chromium: an action sent on a stalled network (the browser says online, the socket stays
open, no byte gets through) says it is still sending after ~2 s, and when its 10 s are up says it
was not confirmed and what to do, instead of nothing for 10 s and then "did not answer in time".

The socket goes through the test (SocketGate), which mutes it: what the page sends is kept and
reaches the server only once unmuted, as a network that stalls without a close. The page's clock
(Playwright's, installed before the page loads) runs as the wall's but is moved over the call's 10 s
(``stall_out``): waited out for real, each test took 11-22 s."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.streams.helpers import create_stream, http

# Said after ~2 s: well before the call's 10 s, with room for a busy machine.
STILL_SENDING_MS = 8_000
# The call's own 10 s, and room for a busy machine.
GIVEN_UP_MS = 25_000
CALL_TIMEOUT_MS = 10_000  # web/js/client.js ACK_TIMEOUT_MS
NOT_CONFIRMED = "Not confirmed: the server did not answer within 10 s (the connection may be stalled)."


async def stalled(tab: Tab) -> SocketGate:
    """A gate on the tab's socket, and the page's clock installed (before it loads) so that the
    test can move it: time goes on as the wall's until moved."""
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.page.clock.install()
    return gate


async def stall_out(page: Page) -> None:
    """Move the page's clock over a call's whole wait, as that much time passing would: the
    timers due fire (once each), so an unanswered call gives up now instead of 10 s later."""
    await page.clock.fast_forward(CALL_TIMEOUT_MS)


async def live(tab: Tab, path: str) -> Page:
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def test_a_clip_on_a_stalled_network_says_it_is_still_sending_and_is_stored_once(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id = await create_stream(server, title="Stalled")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    gate = await stalled(tab)
    await tab.use_token(server.token("bob"))
    viewer = await live(tab, f"/watch/{session_id}")
    reason = viewer.locator("#clip-reason")
    gate.mute()
    await viewer.locator("#note-input").fill("the stall")
    await viewer.locator("#clip-button").click()
    await expect(reason).to_have_text("Still sending your clip…", timeout=STILL_SENDING_MS)
    await stall_out(viewer)
    await expect(viewer.locator("#confirmation")).to_have_text(
        f"{NOT_CONFIRMED} Your clip is being sent again, as the same clip: it is never stored twice.",
        timeout=GIVEN_UP_MS,
    )
    await expect(viewer.locator("#confirmation")).to_have_attribute("data-kind", "error")
    await expect(reason).to_have_text("Still sending your clip…")  # it goes on trying

    gate.unmute()  # both tries reach the server: the clip is stored once
    await expect(viewer.locator("#confirmation")).to_have_text(re.compile(r"^Clipped! Segment 1 at "))
    await expect(viewer.locator("#mine li")).to_have_count(1)
    await expect(viewer.locator("#mine li .note")).to_have_text("the stall")
    status, clips = await http(server, "GET", f"/api/streams/{session_id}/clips")  # the streamer's view
    assert status == 200, clips
    assert clips["clip_count"] == 1, clips
    assert not tab.errors, tab.errors


async def test_done_on_a_stalled_network_says_it_is_still_sending_then_not_confirmed(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id = await server.create_session("alice", "Planning")
    gate = await stalled(tab)
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/session/{session_id}")
    notice = page.locator("#notice")
    gate.mute()
    await page.locator("#done-button").click()
    await expect(notice).to_have_text("Still sending Done…", timeout=STILL_SENDING_MS)
    await stall_out(page)
    # Sent again as the same press (its request_id) until answered: tests/voice/test_web_retry_done.py.
    await expect(notice).to_have_text(
        f"{NOT_CONFIRMED} Done is being sent again once the connection is back, as the same press: it is never"
        " counted twice.",
        timeout=GIVEN_UP_MS,
    )
    await expect(notice).to_have_attribute("data-kind", "error")
    await expect(page.locator("#done-button")).to_be_disabled()

    gate.unmute()  # the Done that was sent arrives: the page shows the session closed
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
    stored = await server.services.voice.get(session_id)
    assert stored is not None
    assert (stored.status, stored.done_count) == ("closed", 1)
    assert not tab.errors, tab.errors
