"""In Chromium: a guest back after 31 days, past the guest retention, on the server's moved clock.

The guest sweeper has let its things go (seeds: kept while it comes back); the page says so, in
days, and offers a way forward by keyboard, on a phone's 390 px.
"""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from handlers.guest_retention import GUEST_SWEEPER
from tests.helpers import ServerUnderTest
from tests.journeys import DAY_MS, device, fits, readable


async def test_a_guest_back_after_31_days_is_told_in_days_what_became_of_its_things(
    server: ServerUnderTest, browser: Browser
) -> None:
    async with device(browser, server, phone=True) as phone_tab:
        await phone_tab.page.clock.install()
        phone = await phone_tab.open("/")
        await phone.locator("#session-name-input").fill("Tuesday notes")
        await phone.locator("#new-session").tap()
        await expect(phone).to_have_url(re.compile(r"/session/"))
        await expect(phone.locator("#identity")).to_have_attribute("data-state", "known")
        user_id = await phone.locator("#identity").get_attribute("data-user-id")
        await phone.goto("about:blank")  # the tab is closed

        server.services.clock.shift_ms += 31 * DAY_MS
        await phone_tab.page.clock.fast_forward(31 * DAY_MS)
        swept = await server.app[GUEST_SWEEPER].sweep()
        assert (swept.guests_forgotten, swept.sessions_deleted) == (1, 1), swept

        phone = await phone_tab.open("/")
        lost = phone.locator("#identity-lost")
        await expect(lost).to_contain_text("Your sign-in here has expired.")
        # Before: "for as long as guests are kept (the identity panel says how long)", with no
        # identity panel left to say it.
        await expect(lost).to_contain_text("A guest none of whose devices comes back within 30 days is deleted")
        await expect(phone.locator("#recent-error")).to_contain_text("Your sign-in here has expired.")
        await readable(phone)
        await fits(phone)

        # The way forward, by keyboard: a new guest, with nothing of the old one's.
        await phone.locator("#identity-start-over").focus()
        await phone.keyboard.press("Enter")
        await expect(phone.locator("#identity")).to_have_attribute("data-state", "known")
        await expect(phone.locator("#identity")).not_to_have_attribute("data-user-id", user_id or "?")
        await expect(phone.locator("#recent-empty")).to_be_visible()
        await readable(phone)
