"""A guest with no passkey and no other device, signing out: nothing could sign in as that
identity again, and what it made is deleted once the guests' time runs out. It was done at one
press, and the page then said a device link or passkey would bring it all back (audit
"returning" F1). It asks first, and says what is true of a guest afterwards."""

from __future__ import annotations

from playwright.async_api import Browser, Dialog, expect

from tests.browser import new_tab
from tests.helpers import ServerUnderTest
from tests.identity.test_web_link import guest_with_a_session


async def test_a_guest_with_no_way_back_is_asked_before_signing_out(iserver: ServerUnderTest, browser: Browser) -> None:
    tab = await new_tab(browser, iserver)
    try:
        page = await guest_with_a_session(tab, "Made as a guest")
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        asked: list[str] = []

        async def answer(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await (dialog.dismiss() if len(asked) == 1 else dialog.accept())

        page.on("dialog", answer)
        await page.locator("#identity-name").click()
        await page.locator("#identity-signout").click()  # asked, and kept: nothing happens
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", str(user_id))
        assert len(asked) == 1 and "no device can sign in as this identity again" in asked[0], asked
        assert "deleted after" in asked[0], asked
        await expect(page.locator("#identity-signout")).to_be_enabled()
        assert await tab.stored_token() is not None

        async with page.expect_navigation(wait_until="load"):
            await page.locator("#identity-signout").click()  # asked again, and gone ahead
        assert len(asked) == 2, asked
        await expect(page.locator("#identity")).not_to_have_attribute("data-user-id", str(user_id))
    finally:
        await tab.page.context.close()
