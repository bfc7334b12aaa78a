"""The history's "By item" filter as a screen reader meets it (audit "keyboard", finding 1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, listen_to_live_regions, live_texts, new_tab
from tests.helpers import ServerUnderTest
from tests.listening.support import TOKEN_TTL_S, FrozenClock, auth, noon_zone


@pytest_asyncio.fixture
async def history_tab(browser: Browser, lserver: ServerUnderTest) -> AsyncIterator[Tab]:
    """alice's tab, in a zone where the test's clock is at noon; no page error may happen."""
    tab = await new_tab(browser, lserver, timezone_id=noon_zone(lserver.services.clock.now_ms()))
    await tab.use_token(lserver.token("alice", ttl_s=TOKEN_TTL_S), ttl_s=TOKEN_TTL_S)
    yield tab
    await tab.page.context.close()
    assert not tab.errors, "the page reported errors:\n" + "\n".join(tab.errors + tab.console)


async def played_in_the_car(server: ServerUnderTest, now_ms: int, titles: list[str]) -> None:
    """Each title played for a minute, an hour apart, uploaded by another device."""
    async with aiohttp.ClientSession() as http:
        for i, title in enumerate(titles):
            started_at = now_ms - (i + 2) * 3_600_000
            body = {
                "item_id": f"item-{i}",
                "device_id": "car",
                "client_id": f"c{i}",
                "started_at": started_at,
                "ended_at": started_at + 60_000,
                "item": {"title": title},
            }
            async with http.post(f"{server.url}/api/listening/upload", json=body, headers=auth(server)) as r:
                assert r.status == 201


async def opened(tab: Tab) -> Page:
    await listen_to_live_regions(tab.page)
    page = await tab.open("/history")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def test_an_items_button_says_it_filters_and_the_filter_is_said(
    history_tab: Tab, lserver: ServerUnderTest, clock: FrozenClock
) -> None:
    """Pressing "Track 2" under By item cut the Sessions list to its rows, and a screen reader
    heard nothing: the button was named "Track 2" alone, with no pressed state, and the line
    "Only Track 2 · show all" was no live region."""
    await played_in_the_car(lserver, clock.now_ms(), ["Track 1", "Track 2"])
    page = await opened(history_tab)
    rows = page.locator("#sessions li.listening-row")
    await expect(rows).to_have_count(2)
    pick = page.get_by_role("button", name="Show only Track 2's sessions", exact=True)
    await expect(pick).to_have_text("Track 2")  # the visible title is in its name
    await expect(pick).to_have_attribute("aria-pressed", "false")
    await expect(pick).to_have_attribute("aria-controls", "sessions")

    await pick.focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(1)
    await expect(pick).to_have_attribute("aria-pressed", "true")
    await expect(pick).to_be_focused()  # where it was pressed, saying "pressed" now
    await expect(page.locator("#filter-said")).to_have_text("Showing 1 session of Track 2.")
    assert await live_texts(page, "filter-said") == ["Showing 1 session of Track 2."]
    other = page.get_by_role("button", name="Show only Track 1's sessions", exact=True)
    await expect(other).to_have_attribute("aria-pressed", "false")

    await page.keyboard.press("Enter")  # pressed again: every session
    await expect(rows).to_have_count(2)
    await expect(pick).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#filter")).to_be_hidden()
    await expect(page.locator("#filter-said")).to_have_text("Showing all 2 sessions.")
    assert await live_texts(page, "filter-said") == ["Showing 1 session of Track 2.", "Showing all 2 sessions."]


async def test_show_all_is_said_and_leaves_focus_on_the_list(
    history_tab: Tab, lserver: ServerUnderTest, clock: FrozenClock
) -> None:
    await played_in_the_car(lserver, clock.now_ms(), ["Track 1", "Track 2"])
    page = await opened(history_tab)
    rows = page.locator("#sessions li.listening-row")
    await expect(rows).to_have_count(2)
    pick = page.get_by_role("button", name="Show only Track 1's sessions", exact=True)
    await pick.focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#filter")).to_have_text("Only Track 1 · show all")
    await page.locator("#filter-clear").focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#sessions-title")).to_be_focused()
    await expect(pick).to_have_attribute("aria-pressed", "false")
    await expect(page.locator("#filter-said")).to_have_text("Showing all 2 sessions.")
    assert await live_texts(page, "filter-said") == ["Showing 1 session of Track 1.", "Showing all 2 sessions."]
