"""In Chromium: a first visit is quiet. The page cannot see its HttpOnly refresh cookie, so it
learned that it has none from a refused refresh: a 401 the browser logs as a console error on
every first visit (two of them when the page then made the visitor a guest)."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest


async def test_a_first_visit_and_its_guest_log_no_console_error(iserver: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "none")
    await page.locator("#new-session").click()  # the visitor becomes a guest
    await page.wait_for_url("**/session/**")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    assert [line for line in tab.console if line.startswith("error")] == []


async def test_a_returning_browser_with_only_its_cookie_left_is_still_itself(
    iserver: ServerUnderTest, tab: Tab
) -> None:
    """Its site storage cleared but not its cookies: the cookie alone still restores who it is."""
    page = await tab.open("/")
    await page.locator("#new-session").click()
    # The new session's page: the landing page goes there once the session is made (clearing
    # storage while it navigates would meet a context that is gone).
    await page.wait_for_url("**/session/**")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    user_id = await page.locator("#identity").get_attribute("data-user-id")
    await page.evaluate("localStorage.clear()")
    page = await tab.open("/")
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", str(user_id))
