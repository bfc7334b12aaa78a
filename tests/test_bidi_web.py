"""Text people wrote, shown inside the page's own (English) lines, keeps its own direction: an
Arabic name's or note's end punctuation is drawn at its end, on the left, not before its first
letter where an Arabic reader meets it first (audit "localeworld")."""

from __future__ import annotations

import aiohttp
from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started

NAME = "ليلى عبد الله!"
NOTE = "رائع جدا!"

# Where the text's first character and its last ("!") are drawn (x of each one's box).
DRAWN = """(selector) => {
  const element = document.querySelector(selector);
  const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
  const text = walker.nextNode();
  const at = (i) => {
    const range = document.createRange();
    range.setStart(text, i);
    range.setEnd(text, i + 1);
    return range.getBoundingClientRect().x;
  };
  return { first: at(0), last: at(text.data.length - 1) };
}"""


async def ends_on_the_left(page: Page, selector: str) -> None:
    drawn = await page.evaluate(DRAWN, selector)
    assert drawn["last"] < drawn["first"], (selector, drawn)


async def test_an_arabic_name_and_note_end_where_an_arabic_reader_ends(
    server: ServerUnderTest, tab: Tab, clients: list[Client], browser: Browser
) -> None:
    session_id, _ = await started(server, clients)
    headers = {"Authorization": f"Bearer {server.token('layla')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.patch(f"{server.url}/api/auth/me", json={"name": NAME}, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
    viewer = await connect(server, clients, "layla")
    assert (await viewer.call("clip_submit", {"session_id": session_id, "note": NOTE}))["ok"] is True

    await tab.use_token(server.token("layla"))
    page = await tab.open(f"/watch/{session_id}")
    await expect(page.locator("#identity-name")).to_have_text(NAME)
    await ends_on_the_left(page, "#identity-name")
    await expect(page.locator("#mine li .note")).to_have_text([NOTE])
    await ends_on_the_left(page, "#mine li .note")

    streamer = await new_tab(browser, server)
    try:
        await streamer.use_token(server.token("alice"))
        page = await streamer.open(f"/streams/{session_id}")
        await expect(page.locator(".review-clip .who")).to_have_text([NAME])
        await ends_on_the_left(page, ".review-clip .who")
        await ends_on_the_left(page, ".review-clip .note")
    finally:
        await streamer.page.context.close()
