"""Listening on the phone, the history on the laptop, over two days.

One person, two devices (the same identity): the phone plays an audiobook on /player by touch,
the laptop's /history follows live; a play the thumb took back at once (under a second) leaves
no session; the next day the laptop, left open overnight, counts a second day and a two-day
streak when the phone plays again. Both devices' clocks and the server's move by the test.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from tests.helpers import ServerUnderTest
from tests.browser import Tab
from tests.journeys import DAY_MS, LIVE, device, fits, readable
from tests.listening.support import TOKEN_TTL_S, FrozenClock, noon_zone

pytestmark = pytest.mark.timeout(180)

BOOK = "demo-audiobook-1"
SONG = "demo-song-3"


async def signed_in(tab: Tab, server: ServerUnderTest, path: str) -> Page:
    """``path`` opened live as alice, on a page clock the test moves with the server's."""
    await tab.use_token(server.token("alice", ttl_s=TOKEN_TTL_S), ttl_s=TOKEN_TTL_S)
    await tab.page.clock.install()
    page = await tab.open(path)
    await expect(page.locator(LIVE)).to_be_visible()
    return page


async def tap(player: Page, item_id: str, button: str, action: str) -> None:
    row = player.locator(f'li[data-item-id="{item_id}"]')
    await row.locator(f"button.{button}").tap()
    await expect(row).to_have_attribute("data-last-action", action)


async def test_listening_on_the_phone_shows_on_the_laptops_history_over_two_days(
    lserver: ServerUnderTest, clock: FrozenClock, full_browser: Browser
) -> None:
    zone = noon_zone(clock.now_ms())  # the day the test plays is whole in the devices' zone
    async with (
        device(full_browser, lserver, phone=True, timezone_id=zone) as phone_tab,
        device(full_browser, lserver, phone=False, timezone_id=zone) as laptop_tab,
    ):
        history = await signed_in(laptop_tab, lserver, "/history")
        await expect(history.locator("#sessions-empty")).to_be_visible()
        player = await signed_in(phone_tab, lserver, "/player")
        await fits(player)

        await tap(player, BOOK, "play", "started")
        await expect(history.locator("#now-playing")).to_have_text("Playing now on 1 device.")
        clock.shift_ms += 45_000  # under the 60 s of silence after which a play counts as crashed
        await tap(player, BOOK, "pause", "finalized")
        await expect(history.locator("#now-playing")).to_be_hidden()
        rows = history.locator("#sessions li.listening-row")
        await expect(rows).to_have_count(1)
        await expect(rows.locator(".duration")).to_have_text(["45 s"])

        # A song started by mistake and paused at once: no session is kept for it.
        await tap(player, SONG, "play", "started")
        await tap(player, SONG, "pause", "deleted")
        await expect(history.locator("#now-playing")).to_be_hidden()
        await expect(rows).to_have_count(1)
        await expect(rows.locator(".title")).to_have_text(["The Quiet Hour"])
        await expect(history.locator("#items li")).to_have_count(1)  # nor a line by item
        await expect(history.locator("#count")).to_have_text("1")
        await expect(history.locator("#total")).to_have_text("45 s")
        await expect(history.locator("#streak-current")).to_have_text("1 day")

        # The next evening: the phone plays the book again, the laptop was left open.
        clock.shift_ms += DAY_MS
        for page in (player, history):
            await page.clock.fast_forward(DAY_MS)
        await expect(history.locator(LIVE)).to_be_visible()
        await expect(player.locator(LIVE)).to_be_visible()
        await tap(player, BOOK, "play", "started")
        clock.shift_ms += 40_000
        await tap(player, BOOK, "pause", "finalized")
        await expect(rows).to_have_count(2)
        await expect(rows.locator(".duration")).to_have_text(["40 s", "45 s"])
        await expect(history.locator("#total")).to_have_text("1 min 25 s")
        await expect(history.locator("#streak-current")).to_have_text("2 days")
        await expect(history.locator("#streak-longest")).to_have_text("2 days")
        await expect(history.locator("#chart rect.bar:not(.empty)")).to_have_count(2)
        await readable(history)

        # The phone opens the history too: the same, and it fits.
        await player.locator("nav a[href='/history']").tap()
        await expect(player.locator(LIVE)).to_be_visible()
        await expect(player.locator("#sessions li.listening-row .duration")).to_have_text(["40 s", "45 s"])
        await expect(player.locator("#streak-current")).to_have_text("2 days")
        await fits(player)
        await readable(player)
