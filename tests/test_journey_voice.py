"""A voice note begun on the phone and finished on the laptop.

The person records with the FAB on their phone (a first visit: the press makes the guest), links
their laptop from the phone, and closes the phone's tab mid-chunk. The laptop's /session follows
it live: recording, then paused; the audio the phone held arrives when the phone opens a page
again. Done on the laptop closes the session; the phone, reopened, shows it closed.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Browser, expect

from tests.helpers import ServerUnderTest
from tests.journeys import LIVE, device, device_link, fits, readable
from tests.voice.waits import status_becomes, stored_chunks

pytestmark = pytest.mark.timeout(180)


async def test_a_note_recorded_on_the_phone_is_finished_on_the_laptop(
    iserver: ServerUnderTest, full_browser: Browser
) -> None:
    async with (
        device(full_browser, iserver, phone=True) as phone_tab,
        device(full_browser, iserver, phone=False) as laptop_tab,
    ):
        phone = await phone_tab.open("/")
        await expect(phone.locator("#fab-new")).to_be_enabled()
        await phone.locator("#fab-new").tap()
        await expect(phone.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await expect(phone.locator("#identity")).to_have_attribute("data-state", "known")
        user_id = await phone.locator("#identity").get_attribute("data-user-id")
        assert user_id is not None
        session_id = await iserver.services.voice.active_id(user_id)
        assert session_id is not None

        # The laptop, signed in with a link from the phone, follows the recording live.
        link = await device_link(phone, iserver)
        laptop = await laptop_tab.open(link)  # made on the start page, it opens the start page
        await expect(laptop).to_have_url(iserver.url + "/")
        await expect(laptop.locator("#identity")).to_have_attribute("data-user-id", user_id)
        await laptop.locator("nav a[href='/session']").click()
        await laptop.wait_for_url(f"**/session/{session_id}")
        await expect(laptop.locator(LIVE)).to_be_visible()
        pictogram = laptop.locator("#status-pictogram")
        await expect(pictogram).to_have_attribute("data-status", "recording")
        await expect(pictogram).to_have_attribute("aria-label", "Status: Recording")
        await expect(laptop.locator("#status-label")).to_have_text("Recording")
        await expect(laptop.locator("#identity")).to_have_attribute("data-user-id", user_id)
        await asyncio.sleep(1.0)  # a second more of speech before the tab goes (a recording, not a wait)

        # The phone's tab is closed mid-chunk (the system closes it: nothing is asked).
        await phone.close()
        await expect(pictogram).to_have_attribute("data-status", "paused")
        await expect(laptop.locator("#status-label")).to_have_text("Paused")
        await status_becomes(iserver, session_id, "paused")
        await readable(laptop)

        # The phone opens a page again: the audio it kept goes up, and the laptop lists it.
        phone = await phone_tab.page.context.new_page()
        await phone.goto(iserver.url + "/", wait_until="domcontentloaded")
        [chunk] = await stored_chunks(iserver, session_id, 1)
        assert chunk["duration_ms"] >= 1000, chunk
        await expect(laptop.locator("#chunk-list li")).to_have_count(1)
        await expect(laptop.locator("#chunk-total")).to_contain_text("1 chunk ·")

        # Done, from the laptop.
        await expect(laptop.locator("#done-button")).to_be_enabled()
        await laptop.locator("#done-button").click()
        await expect(laptop.locator("#session-state")).to_have_text("Closed")
        await expect(pictogram).to_have_attribute("data-status", "closed")
        await expect(laptop.locator("#done-count")).to_have_text("1")
        await readable(laptop)

        # The phone, reopened on the session: closed there too.
        await phone.goto(f"{iserver.url}/session/{session_id}", wait_until="domcontentloaded")
        await expect(phone.locator(LIVE)).to_be_visible()
        await expect(phone.locator("#session-state")).to_have_text("Closed")
        await expect(phone.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
        await expect(phone.locator("#status-label")).to_have_text("Closed")
        await expect(phone.locator("#closed-line")).to_be_visible()
        await expect(phone.locator("#done-count")).to_have_text("1")  # a Done again is allowed (seed 002)
        await expect(phone.locator("#chunk-list li")).to_have_count(1)
        await fits(phone)
        await readable(phone)
        # Its recorder knows the session is over: no active session, a New away from the next.
        await expect(phone.locator("#fab-status")).to_have_attribute("data-status", "ready")
        await expect(phone.locator("#fab-new")).to_be_enabled()
