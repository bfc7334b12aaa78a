"""In Chromium: the recorder when its session is closed somewhere else, and Rec on a closed page.

A field audit, with a fake microphone: a session closed elsewhere (the bot's /done, Done on
another device) while the FAB recorded into it left the FAB "Recording" with Cut, Pause and Done
enabled, showing "not allowed in the session's current state", and each chunk it uploaded after
was refused, the audio recorded before the close included. And Rec on a closed session's page
made that closed session the person's active one, then said it records no more."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, Request, expect

from storage.voice.repository import Performer
from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.voice.test_web_fab_held import QUEUED, until_chunks
from tests.voice.test_web_session_follow import until_audio_is_kept

pytestmark = pytest.mark.timeout(180)

RAW_REFUSAL = "not allowed in the session's current state"


async def recording_on_a_new_session(page: Page, server: ServerUnderTest) -> str:
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await until_audio_is_kept(page)
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None
    return session_id


async def expect_closed_and_new_offered(page: Page) -> None:
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "closed")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await expect(page.locator("#fab-rec")).to_have_text("Rec")
    for name in ("rec", "cut", "pause", "done"):
        await expect(page.locator(f"#fab-{name}")).to_be_disabled()


@pytest.mark.parametrize("closer", ["another_device", "bot"])
async def test_a_recording_closed_elsewhere_stops_and_its_audio_is_kept_in_the_session(
    server: ServerUnderTest, tab: Tab, closer: str
) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    session_id = await recording_on_a_new_session(page, server)

    if closer == "another_device":
        laptop = Client(server.url, server.token("alice"))
        await laptop.connect()
        try:
            ack = await laptop.call("session_done", {"session_id": session_id})
            assert ack["ok"] is True, ack
        finally:
            await laptop.close()
    else:  # the chat bot's /done, as the server's own action
        await server.services.voice.done(session_id, Performer(user_id="alice", read_scope="own", may_update=True))

    message = page.locator("#fab-message")
    await expect(message).to_contain_text("This session was closed on another device; what you recorded is kept in it")
    await expect_closed_and_new_offered(page)
    # What it recorded before the close went up, into the closed session, as a late chunk.
    await until_chunks(server, session_id, 1)
    await expect(page.locator("#fab-pending")).to_be_hidden()
    await expect(page.locator("#fab-held")).to_be_hidden()
    assert await page.evaluate(QUEUED) == 0
    session = await server.services.voice.get(session_id)
    assert session is not None and (session.status, session.done_count) == ("closed", 1)
    await expect(message).not_to_contain_text(RAW_REFUSAL)
    # New goes on as the person expects: a new session, recording.
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    assert await server.services.voice.active_id("alice") not in (None, session_id)
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")


async def test_rec_on_a_closed_sessions_page_says_so_and_changes_nothing(server: ServerUnderTest, tab: Tab) -> None:
    closed = await server.create_session("alice", "Yesterday")
    await server.services.voice.done(closed, Performer(user_id="alice", read_scope="own", may_update=True))
    active = await server.create_session("alice", "Today")
    await server.services.voice.set_active("alice", active)
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/session/{closed}")
    activations: list[str] = []

    def note(request: Request) -> None:
        if "/voicebot/activate_session" in request.url:
            activations.append(request.url)

    page.on("request", note)
    await expect(page.locator("#fab-rec")).to_be_enabled()

    await page.locator("#fab-rec").click()

    await expect(page.locator("#fab-message")).to_contain_text("This session is closed; it records no more")
    await expect(page.locator("#fab-new")).to_be_enabled()
    assert activations == []
    assert await server.services.voice.active_id("alice") == active
    session = await server.services.voice.get(active)
    assert session is not None and session.status == "ready"
    await expect(page.locator("#fab-status")).not_to_have_attribute("data-status", "recording")
