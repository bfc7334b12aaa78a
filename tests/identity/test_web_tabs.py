"""In Chromium: a browser's tabs are one person; a name changed in one shows in the others.

Renamed in one tab (the identity panel's Save name), the user's other tabs went on showing the
old name in the top bar, and in their open panel's field, until a reload."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.browser import accept_dialogs, new_tab
from tests.helpers import ServerUnderTest
from tests.identity.test_web_link import guest_with_a_session

pytestmark = pytest.mark.timeout(180)


async def test_a_name_saved_in_one_tab_shows_in_the_others_at_once(iserver: ServerUnderTest, browser: Browser) -> None:
    tab = await new_tab(browser, iserver)
    try:
        first = await guest_with_a_session(tab, "Notes")
        second = await tab.page.context.new_page()
        await second.goto(iserver.url + "/history", wait_until="domcontentloaded")
        await expect(second.locator("#identity-name")).to_have_text("Guest")
        await second.locator("#identity-name").click()  # its panel open, the field not in use
        await expect(second.locator("#identity-name-input")).to_have_value("Guest")

        await first.locator("#identity-name").click()
        await first.locator("#identity-name-input").fill("Ada Lovelace")
        await first.locator("#identity-name-input").press("Tab")
        await first.keyboard.press("Enter")  # Save name
        await expect(first.locator("#identity-name")).to_have_text("Ada Lovelace")

        await expect(second.locator("#identity-name")).to_have_text("Ada Lovelace")
        await expect(second.locator("#identity-name-input")).to_have_value("Ada Lovelace")
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


async def test_signing_out_on_a_page_of_ones_own_leads_to_the_start_page_as_nobody(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """Reloaded after the sign-out, a session page made a new guest for itself, which the server
    then refused that session: 'No access to this session. This session belongs to another user.'
    and a 403 in the console."""
    tab = await new_tab(browser, iserver)
    try:
        page = await guest_with_a_session(tab, "Mine")
        await page.locator("#identity-name").click()
        async with page.expect_navigation(wait_until="load"):
            accept_dialogs(page)
            await page.locator("#identity-signout").click()
        await expect(page).to_have_url(iserver.url + "/")
        await expect(page.locator("#identity")).to_have_attribute("data-state", "none")
        await expect(page.locator("#recent-empty")).to_be_visible()
        assert [line for line in tab.console if line.startswith("error")] == []
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
