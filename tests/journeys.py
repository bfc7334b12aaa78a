"""Helpers of the journey tests (tests/test_journey_*.py): a person's devices, their device link,
and the checks of what a page shows to people (readable words, nothing wider than a phone)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, ViewportSize, expect

from tests.browser import ACTION_TIMEOUT_MS, Tab
from tests.helpers import ServerUnderTest

PHONE: ViewportSize = {"width": 390, "height": 844}
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
DAY_MS = 86_400_000
LIVE = '#connection[data-state="live"]'

# What a person must never read on a page: an error code as the server sends it, a value the
# script never had, a stack trace, a raw object.
UNREADABLE = re.compile(
    r"\bundefined\b|\bnull\b|NaN|\[object |Traceback|TypeError|ReferenceError|"
    r"\b(invalid_payload|invalid_state|not_found|forbidden|unauthorized|rate_limited|conflict|"
    r"payload_too_large|session_not_found|access_denied|internal_error)\b"
)


@asynccontextmanager
async def device(
    browser: Browser, server: ServerUnderTest, *, phone: bool, timezone_id: str | None = None
) -> AsyncIterator[Tab]:
    """A device of its own (an empty browser context): a 390x844 touch phone or a laptop, in the
    machine's time zone unless ``timezone_id`` names one. After the journey, no uncaught error or
    CSP violation may have happened on it."""
    if phone:
        context = await browser.new_context(
            viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2, timezone_id=timezone_id
        )
    else:
        context = await browser.new_context(viewport=LAPTOP, timezone_id=timezone_id)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    opened = Tab(page=await context.new_page(), base_url=server.url)
    try:
        yield opened
    finally:
        await context.close()
    assert not opened.errors, "the page reported errors:\n" + "\n".join(opened.errors + opened.console)


async def device_link(page: Page, server: ServerUnderTest) -> str:
    """The one-time link that signs another device in as this page's person (its identity panel)."""
    await page.locator("#identity-name").click()
    await page.locator("#identity-link").click()
    url = await page.locator("#identity-link-url").input_value()
    await page.keyboard.press("Escape")  # the panel is put away again
    return url.removeprefix(server.url)


async def readable(page: Page) -> str:
    """The page's visible text, checked to hold nothing a person could not read."""
    text = await page.locator("body").inner_text()
    found = UNREADABLE.search(text)
    assert found is None, f"{page.url} shows {found.group(0)!r}:\n{text}"
    return text


async def fits(page: Page, width: int = PHONE["width"]) -> None:
    """Nothing on the page is wider than the phone: no sideways scrolling."""
    scroll_width = await page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide on a {width} px phone"


async def live(tab: Tab, path: str) -> Page:
    """Open ``path`` and wait until its connection is live."""
    page = await tab.open(path)
    await expect(page.locator(LIVE)).to_be_visible()
    return page
