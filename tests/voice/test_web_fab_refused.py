"""In Chromium: a recording the server will not take is kept on the device, not thrown away.

A phone records on the way (no network), and meanwhile the person deletes the session on the
laptop. Back online, the phone's chunk is refused for good (404: it is gone). The queue deleted
it and said 'A chunk was refused': the recording, made by the person and held nowhere else, was
lost. Now it stays on the device, in the recorder's kept-recordings note, to be downloaded and
then removed by the person. Done on the laptop instead (the session closed) used to be refused
too (409), the audio recorded while the session was open included: now the closed session takes
it (a late chunk, PROTOCOL `POST /voicebot/chunks`)."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.voice.test_web_fab_held import QUEUED, paused_on_a_new_session, record_one_chunk_kept_back, until_chunks

pytestmark = pytest.mark.timeout(180)


async def a_phone_holding_a_chunk(server: ServerUnderTest, tab: Tab) -> tuple[Page, str]:
    """A phone page whose recording's chunk waits in its queue (uploads fail while it records,
    its retries keep failing), and the session it was recorded into."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    await page.set_viewport_size({"width": 390, "height": 844})
    await record_one_chunk_kept_back(page, unroute=False)
    session_id = await server.services.voice.active_id("alice")
    assert session_id is not None
    return page, session_id


async def test_a_recording_queued_offline_goes_into_its_session_closed_meanwhile(
    server: ServerUnderTest, tab: Tab
) -> None:
    """A phone records offline (its lease expires: the server pauses it), Done on the laptop; the
    phone back online with its queued chunk: it was refused, the server held none of it."""
    page, session_id = await a_phone_holding_a_chunk(server, tab)
    laptop = Client(server.url, server.token("alice"))
    await laptop.connect()
    try:
        assert (await laptop.call("session_done", {"session_id": session_id}))["ok"] is True
    finally:
        await laptop.close()

    answers: list[int] = []
    page.on("response", lambda r: answers.append(r.status) if "/voicebot/chunks" in r.url else None)
    await page.unroute("**/voicebot/chunks?*")
    await page.evaluate("window.dispatchEvent(new Event('online'))")  # back online: sent now

    await until_chunks(server, session_id, 1)
    await expect(page.locator("#fab-pending")).to_be_hidden()
    await expect(page.locator("#fab-held")).to_be_hidden()
    assert await page.evaluate(QUEUED) == 0
    assert answers == [201], answers
    session = await server.services.voice.get(session_id)
    assert session is not None and (session.status, session.chunk_count) == ("closed", 1)


async def test_a_recording_its_session_no_longer_takes_is_kept_to_download(server: ServerUnderTest, tab: Tab) -> None:
    page, session_id = await a_phone_holding_a_chunk(server, tab)

    async with aiohttp.ClientSession() as http:
        url = f"{server.url}/voicebot/sessions/{session_id}"
        headers = {"Authorization": f"Bearer {server.token('alice')}"}
        async with http.delete(url, headers=headers) as response:
            assert response.status == 200, await response.text()

    refused: list[int] = []
    page.on("response", lambda r: refused.append(r.status) if "/voicebot/chunks" in r.url else None)
    await page.unroute("**/voicebot/chunks?*")
    await page.evaluate("window.dispatchEvent(new Event('online'))")  # back online: sent now

    held = page.locator("#fab-held")
    await expect(held).to_contain_text("1 recording could not be uploaded (its session was deleted meanwhile)")
    assert refused and refused[-1] == 404, refused
    assert await page.evaluate(QUEUED) == 1
    async with page.expect_download() as downloading:
        await page.locator("#fab-held-download").click()
    download = await downloading.value
    assert download.suggested_filename.startswith(f"recording-{session_id}-chunk-")
    # Kept across a reload, and never sent again to be refused again.
    await page.reload(wait_until="domcontentloaded")
    await expect(held).to_contain_text("1 recording could not be uploaded")
    await page.locator("#fab-held-download").click()
    await page.locator("#fab-held-remove").click()
    await expect(held).to_be_hidden()
    assert await page.evaluate(QUEUED) == 0
    assert len(refused) == 1, refused


async def test_a_pause_closed_elsewhere_offers_no_resume_but_new(server: ServerUnderTest, tab: Tab) -> None:
    """Paused on the phone, Done on the laptop: the phone's recorder showed 'Closed' and still
    offered Resume and Done, which answered 'not allowed in the session's current state'."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    session_id = await paused_on_a_new_session(page, server, "alice")

    laptop = Client(server.url, server.token("alice"))
    await laptop.connect()
    try:
        await laptop.call("session_done", {"session_id": session_id})
    finally:
        await laptop.close()

    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "closed")
    await expect(page.locator("#fab-message")).to_contain_text("This session was closed elsewhere")
    await expect(page.locator("#fab-rec")).to_have_text("Rec")
    await expect(page.locator("#fab-rec")).to_be_disabled()
    await expect(page.locator("#fab-done")).to_be_disabled()
    await expect(page.locator("#fab-new")).to_be_enabled()
    # New goes on as the person expects: a new session, recording.
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    assert await server.services.voice.active_id("alice") not in (None, session_id)
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
