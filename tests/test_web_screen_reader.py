"""In Chromium, as a screen reader names things: controls repeated per row say which row."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest


async def test_the_players_buttons_name_their_item(server: ServerUnderTest, tab: Tab) -> None:
    """Each row's Play, Pause and Stop were named just that: tabbing through, a screen reader
    said "Play, button" once per item, and nothing told which item each one plays."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/player")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    rows = page.locator("#items li")
    for i in range(await rows.count()):
        title = await rows.nth(i).locator("strong").text_content()
        for word in ("Play", "Pause", "Stop"):
            # The visible word first: a voice command "click Play" still finds it.
            named = page.get_by_role("button", name=f"{word} {title}", exact=True)
            await expect(named).to_have_count(1)
            await expect(named).to_have_text(word)
