"""In Chromium: a browser signed out on purpose stays nobody, in every tab, until the person chooses.

"Sign out everywhere" in one tab, then a reload of another tab of the same browser on the person's
own session made a brand-new guest behind their back, which that page then refused: "No access to
this session · This session belongs to another user." A tab left open went on showing the
person's things (the session, their history, Delete, Export) under "No identity yet"; one whose
device was signed out from another device kept showing them under its notice."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect

from tests.browser import accept_dialogs, new_tab
from tests.helpers import ServerUnderTest
from tests.identity.test_web_link import guest_with_a_session

pytestmark = pytest.mark.timeout(180)


async def profiles(server: ServerUnderTest) -> list[str]:
    return sorted(await server.services.redis.keys(server.services.keys.user_profile("*")))


async def test_a_browser_signed_out_everywhere_makes_no_guest_in_another_tab_until_asked(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    tab = await new_tab(browser, iserver)
    try:
        first = await guest_with_a_session(tab, "Mine")
        session_path = first.url.removeprefix(iserver.url)
        user_id = str(await first.locator("#identity").get_attribute("data-user-id"))
        second = await first.context.new_page()
        await second.goto(iserver.url + session_path, wait_until="domcontentloaded")
        await expect(second.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(second.locator("#session-name")).to_have_text("Mine")
        before = await profiles(iserver)

        await first.locator("#identity-name").click()
        async with first.expect_navigation(wait_until="load"):
            accept_dialogs(first)
            await first.locator("#identity-signout-all").click()

        # The tab left open leaves the person's session (to the start page, as the first did).
        await expect(second).to_have_url(iserver.url + "/")
        await expect(second.locator("#identity-signed-out")).to_contain_text("You signed out on this browser.")
        await expect(second.locator("#identity")).not_to_have_attribute("data-user-id", user_id)
        await expect(second.locator("#session-name")).to_have_count(0)

        # Reloaded on the person's own session, now and on a later visit: nobody, saying so.
        for _ in range(2):
            await second.goto(iserver.url + session_path, wait_until="domcontentloaded")
            await expect(second.locator("#page-error-title")).to_have_text("Signed out")
            await expect(second.locator("#identity-signed-out")).to_contain_text("Start as a new guest")
            await expect(second.locator("#identity")).to_have_attribute("data-state", "none")
        await expect(first.locator("#identity-signed-out")).to_be_visible()
        assert await profiles(iserver) == before  # no new guest was made behind the person's back

        # Their choice: a new guest, whom every tab then shows.
        async with second.expect_navigation(wait_until="load"):
            await second.locator("#identity-start-over").click()
        await expect(second.locator("#identity")).to_have_attribute("data-state", "known")
        guest = str(await second.locator("#identity").get_attribute("data-user-id"))
        assert guest != user_id
        await expect(first.locator("#identity")).to_have_attribute("data-user-id", guest)
        assert await second.evaluate("localStorage.getItem('sessionhub.signed_out')") is None
        assert [line for line in tab.console if line.startswith("error")] == [], tab.console
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


async def test_a_page_whose_device_is_signed_out_elsewhere_hides_the_persons_things(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    tab = await new_tab(browser, iserver)
    try:
        page = await guest_with_a_session(tab, "Private notes")
        user_id = str(await page.locator("#identity").get_attribute("data-user-id"))
        await iserver.services.identities.revoke_all(user_id)  # "Sign out everywhere" on another device

        await expect(page.locator("#identity-lost")).to_contain_text("This device was signed out.")
        await expect(page.locator("#identity-gone")).to_contain_text("What this page showed is hidden")
        await expect(page.locator("#session-name")).to_be_hidden()
        await expect(page.get_by_text("Private notes")).to_be_hidden()
        # What works stays: the way back is offered, and the badge says why nothing is live.
        await expect(page.locator("#identity-start-over")).to_be_visible()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "unauthorized")

        # Another person starts here: the page is theirs, with nothing of the one before.
        async with page.expect_navigation(wait_until="load"):
            await page.locator("#identity-start-over").click()
        await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
        await expect(page.get_by_text("Private notes")).to_have_count(0)
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
