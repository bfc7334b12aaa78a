"""The /player in two tabs of one browser: one device (one id in localStorage) to the server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from playwright.async_api import Browser, Page, expect

from tests.browser import new_tab
from tests.helpers import ServerUnderTest
from tests.listening.support import TOKEN_TTL_S, FrozenClock, auth


async def listened(server: ServerUnderTest) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/listening/sessions", headers=auth(server)) as r,
    ):
        assert r.status == 200
        sessions: list[dict[str, Any]] = (await r.json())["sessions"]
        return sessions


async def play(page: Page, item_id: str) -> None:
    row = page.locator(f'li[data-item-id="{item_id}"]')
    await row.locator("button.play").click()
    await expect(row).to_have_attribute("data-last-action", "started")


async def test_a_tab_that_starts_playing_stops_the_other_tab_of_the_browser(
    browser: Browser, lserver: ServerUnderTest, clock: FrozenClock
) -> None:
    """Both tabs went on playing, and each heartbeat switched the device's session to its own
    item: the podcast was cut in 2 s pieces and the book, a fresh session each time, was lost."""
    tab = await new_tab(browser, lserver)
    try:
        await tab.use_token(lserver.token("alice", ttl_s=TOKEN_TTL_S), ttl_s=TOKEN_TTL_S)
        first = await tab.open("/player")
        second = await tab.page.context.new_page()
        await second.goto(lserver.url + "/player", wait_until="domcontentloaded")
        for page in (first, second):
            await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await play(first, "demo-audiobook-1")
        clock.shift_ms += 10_000
        await play(second, "demo-podcast-7")

        await expect(first.locator("#now-playing")).to_have_attribute("data-state", "idle")
        await expect(first.locator("#now-playing")).to_have_text("Paused here: another tab of this browser is playing.")
        await expect(first.locator('li[data-item-id="demo-audiobook-1"] button.play')).to_be_enabled()
        # The podcast plays on as one session, extended by its own tab's heartbeats alone.
        clock.shift_ms += 30_000
        for _ in range(100):
            podcast = [s for s in await listened(lserver) if s["item_id"] == "demo-podcast-7"]
            if podcast and podcast[0]["ended_at"] == clock.now_ms():
                break
            await asyncio.sleep(0.05)
        sessions = await listened(lserver)
        assert [(s["item_id"], s["open"], s["duration_ms"]) for s in sessions] == [
            ("demo-podcast-7", True, 30_000),
            ("demo-audiobook-1", False, 10_000),
        ]
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
