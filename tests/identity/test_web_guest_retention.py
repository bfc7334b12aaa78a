"""In Chromium: the identity panel tells a guest how long what it makes is kept."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.identity.test_web import in_page


async def test_the_panel_tells_a_guest_to_come_back_within_the_idle_time(server: ServerUnderTest, tab: Tab) -> None:
    """A guest reads that its things go after 30 days away (SESSIONHUB_GUEST_IDLE_S), and how to keep
    them; the panel opens by keyboard, and on a phone's width the notice wraps inside it."""
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    page = await tab.open("/streams")
    await in_page(page, "/api/me/sessions")  # the page becomes a guest
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await page.locator("#identity-name").focus()
    await page.keyboard.press("Enter")
    notice = page.locator("#identity-panel #identity-retention")
    await expect(notice).to_contain_text("come back at least every 30 days")
    await expect(notice).to_contain_text("Add a passkey to keep it for good")
    box = await notice.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
