"""In Chromium: Done and Process now pressed on a stalled network (SocketGate mutes the socket:
the browser online, the connection open, nothing through) are sent again as the same press
(its request_id) until answered, and the page says so; once the network is back, the server has
counted the press once and queued one job, however many tries reached it."""

from __future__ import annotations

import json
from typing import Any

from playwright.async_api import Page, expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.test_web_stalled_actions import GIVEN_UP_MS, NOT_CONFIRMED, STILL_SENDING_MS, live, stall_out, stalled
from tests.voice.test_web_fab_offline import recording

DONE_RESENT = "Done is being sent again once the connection is back, as the same press: it is never counted twice."
PROCESS_RESENT = (
    "Process now is being sent again once the connection is back, as the same press: it is never queued twice."
)
# Answered once unmuted: what was kept back, then the next resend (1 s after the last try's 10 s).
ANSWERED_MS = 30_000


def closed(count: int) -> str:
    return f"Session closed (Done \N{MULTIPLICATION SIGN} {count})."


async def jobs_of(server: ServerUnderTest, kind: str) -> list[dict[str, Any]]:
    entries = await server.services.redis.xrange(server.services.keys.jobs())
    return [job for _, fields in entries if (job := json.loads(fields["job"]))["type"] == kind]


async def stalled_session_page(server: ServerUnderTest, tab: Tab) -> tuple[Page, str, SocketGate]:
    session_id = await server.create_session("alice", "Planning")
    gate = await stalled(tab)
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/session/{session_id}")
    gate.mute()
    return page, session_id, gate


async def test_done_on_a_stalled_network_is_sent_again_as_the_same_press_and_counted_once(
    server: ServerUnderTest, tab: Tab
) -> None:
    page, session_id, gate = await stalled_session_page(server, tab)
    notice, done = page.locator("#notice"), page.locator("#done-button")
    await done.click()
    await expect(notice).to_have_text("Still sending Done…", timeout=STILL_SENDING_MS)
    await stall_out(page)
    await expect(notice).to_have_text(f"{NOT_CONFIRMED} {DONE_RESENT}", timeout=GIVEN_UP_MS)
    await expect(notice).to_have_attribute("data-kind", "error")
    # Not offered meanwhile: pressed again it would be another press, counted again.
    await expect(done).to_be_disabled()
    await gate.until_kept("session_done", 2)  # the first try and its resend, both kept back

    gate.unmute()  # every try reaches the server: the press is counted once
    await expect(notice).to_have_text(closed(1), timeout=ANSWERED_MS)
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
    await expect(done).to_be_enabled()
    stored = await server.services.voice.get(session_id)
    assert stored is not None and (stored.status, stored.done_count) == ("closed", 1)
    assert len(await jobs_of(server, "DONE_MULTIPROMPT")) == 1

    await done.click()  # a new press is another close action: counted
    await expect(notice).to_have_text(closed(2))
    assert len(await jobs_of(server, "DONE_MULTIPROMPT")) == 2
    assert not tab.errors, tab.errors


async def test_process_now_on_a_stalled_network_is_sent_again_and_queued_once(
    server: ServerUnderTest, tab: Tab
) -> None:
    page, _, gate = await stalled_session_page(server, tab)
    notice = page.locator("#notice")
    await page.locator("#process-button").click()
    await gate.until_kept("post_process_session")
    await stall_out(page)
    await expect(notice).to_have_text(f"{NOT_CONFIRMED} {PROCESS_RESENT}", timeout=GIVEN_UP_MS)
    await expect(page.locator("#process-button")).to_be_disabled()
    await gate.until_kept("post_process_session", 2)

    gate.unmute()
    await expect(notice).to_have_text("Processing queued.", timeout=ANSWERED_MS)
    assert len(await jobs_of(server, "POST_PROCESS_SESSION")) == 1
    assert not tab.errors, tab.errors


async def test_the_fabs_done_on_a_stalled_network_is_sent_again_and_counted_once(
    server: ServerUnderTest, tab: Tab
) -> None:
    gate = await stalled(tab)
    page, session_id = await recording(tab, server)
    message = page.locator("#fab-message")
    gate.mute()
    await page.locator("#fab-done").click()
    # The final upload's status goes unanswered first (10 s), then Done's own try (10 s).
    await gate.until_kept("set_session_status")
    await stall_out(page)
    await expect(message).to_have_text("Still sending Done…", timeout=GIVEN_UP_MS)
    await stall_out(page)
    await expect(message).to_have_text(f"{NOT_CONFIRMED} {DONE_RESENT}", timeout=GIVEN_UP_MS)
    await gate.until_kept("session_done", 2)

    gate.unmute()
    await expect(message).to_have_text(closed(1), timeout=ANSWERED_MS)
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "closed")
    stored = await server.services.voice.get(session_id)
    assert stored is not None and (stored.status, stored.done_count) == ("closed", 1)
    assert len(await jobs_of(server, "DONE_MULTIPROMPT")) == 1
    assert not tab.errors, tab.errors
