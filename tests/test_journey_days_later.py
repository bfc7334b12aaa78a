"""A person who comes back days later, then picks up a phone.

A guest makes a voice session, a pattern and a stream on a laptop, listens to a chapter on its
player, and closes the tab. Eight days later (the server's clock and the page's moved: far past
the hour an access token lives, within the refresh cookie's 180 days and the guest retention's
30) the same browser opens the start page: it is the same guest, signed back in by its cookie, and
lists what it made. A device link then signs a phone in as the same person, which lists the same
things, opens the stream and shows the listening history. The laptop leaves the pattern open two
hours (its access token runs out under it) and renames it, twice: the page's socket reconnects
with a fresh token and the name typed is kept.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.async_api import Browser, expect

from tests.helpers import ServerUnderTest
from tests.journeys import DAY_MS, LIVE, device, device_link, fits, readable
from tests.patterns.test_web import UUID

pytestmark = pytest.mark.timeout(180)

HOUR_MS = 3_600_000
BOOK = "demo-audiobook-1"  # The Quiet Hour, on /player


async def test_a_guest_back_after_eight_days_keeps_its_things_on_the_laptop_and_a_phone(
    server: ServerUnderTest,
    full_browser: Browser,
) -> None:
    async with (
        device(full_browser, server, phone=False) as laptop_tab,
        device(full_browser, server, phone=True) as phone_tab,
    ):
        await laptop_tab.page.clock.install()
        laptop = await laptop_tab.open("/")
        await laptop.locator("#session-name-input").fill("Tuesday notes")
        await laptop.locator("#new-session").click()  # a first visit: a guest, on a device of its own
        await expect(laptop.locator("#index-error")).to_be_hidden()
        await expect(laptop).to_have_url(re.compile(r"/session/"))
        await laptop_tab.open("/patterns")
        await expect(laptop).to_have_url(re.compile(rf"/s/{UUID}$"))
        await expect(laptop.locator(LIVE)).to_be_visible()
        pattern_url = laptop.url
        await laptop.locator("#pattern-name").fill("Rainy loop")
        await laptop.locator("#pattern-name").press("Enter")
        await expect(laptop.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
        user_id = await laptop.locator("#identity").get_attribute("data-user-id")
        record = await laptop_tab.stored_token()
        assert record is not None
        await expect(laptop.locator("#pattern-name")).to_have_value("Rainy loop")
        laptop = await laptop_tab.open("/streams")
        await laptop.locator("#title-input").fill("Raid night")
        await laptop.locator("#create-button").click()
        await laptop.wait_for_url("**/streams/*")
        stream_id = laptop.url.rsplit("/", 1)[1]
        await expect(laptop.locator(LIVE)).to_be_visible()
        laptop = await laptop_tab.open("/player")
        await expect(laptop.locator(LIVE)).to_be_visible()
        book = laptop.locator(f'li[data-item-id="{BOOK}"]')
        await book.locator("button.play").click()
        await expect(book).to_have_attribute("data-last-action", "started")
        server.services.clock.shift_ms += 45_000  # a chapter's worth (under the 60 s of silence of a crash)
        await book.locator("button.pause").click()
        await expect(book).to_have_attribute("data-last-action", "finalized")
        await laptop.goto("about:blank")  # the tab is closed

        # Eight days later, the same browser.
        server.services.clock.shift_ms += 8 * DAY_MS
        await laptop_tab.page.clock.fast_forward(8 * DAY_MS)
        laptop = await laptop_tab.open("/")
        recent = laptop.locator("#recent-list")
        await expect(recent).to_contain_text("Tuesday notes")
        await expect(recent).to_contain_text("Rainy loop")
        await expect(laptop.locator("#identity")).to_have_attribute("data-user-id", user_id or "?")  # the same guest
        again = await laptop_tab.stored_token()
        assert again is not None and again["token"] != record["token"]  # on a fresh token
        await readable(laptop)

        # The same person on a phone, by the device link.
        link = await device_link(laptop, server)
        await phone_tab.page.clock.install()
        await phone_tab.page.clock.fast_forward(8 * DAY_MS)
        phone = await phone_tab.open(link)  # made on the start page, it opens the start page
        await expect(phone).to_have_url(server.url + "/")
        await expect(phone.locator("#identity")).to_have_attribute("data-user-id", user_id or "?")
        await expect(phone.locator("#recent-list")).to_contain_text("Tuesday notes")
        await expect(phone.locator("#recent-list")).to_contain_text("Rainy loop")
        await readable(phone)
        await fits(phone)
        phone = await phone_tab.open(f"/streams/{stream_id}")
        await expect(phone.locator(LIVE)).to_be_visible()
        await expect(phone.locator("#stream-title")).to_have_text("Raid night")
        await readable(phone)
        phone = await phone_tab.open("/history")
        await expect(phone.locator(LIVE)).to_be_visible()
        await expect(phone.locator("#sessions li.listening-row .title")).to_have_text(["The Quiet Hour"])
        await expect(phone.locator("#count")).to_have_text("1")
        await readable(phone)
        await fits(phone)

        # The laptop leaves the pattern open while its access token runs out, then renames it.
        laptop = await laptop_tab.open(pattern_url.removeprefix(server.url))
        await expect(laptop.locator(LIVE)).to_be_visible()
        server.services.clock.shift_ms += 2 * HOUR_MS
        await laptop_tab.page.clock.fast_forward(2 * HOUR_MS)
        await laptop.locator("#pattern-name").fill("Rainy loop, take two")
        await laptop.locator("#pattern-name").press("Enter")
        await expect(laptop.locator(LIVE)).to_be_visible()
        session_id = pattern_url.rsplit("/", 1)[1]
        await phone_tab.open(f"/s/{session_id}")
        await expect(phone_tab.page.locator("#pattern-name")).to_have_value("Rainy loop, take two")
        await expect(phone_tab.page.locator(LIVE)).to_be_visible()
        # Two hours more on the server's clock alone: the laptop's page believes its token fresh,
        # the server refuses its next event; the page reconnects with a new token and sends the
        # rename again, which the phone's open page hears.
        server.services.clock.shift_ms += 2 * HOUR_MS
        await laptop.locator("#pattern-name").fill("Rainy loop, take three")
        await laptop.locator("#pattern-name").press("Enter")
        await expect(phone_tab.page.locator("#pattern-name")).to_have_value("Rainy loop, take three")
        await expect(laptop.locator(LIVE)).to_be_visible()
        await readable(laptop)


async def test_a_phone_whose_clock_runs_hours_ahead_renews_its_token_only_when_due(
    server: ServerUnderTest, full_browser: Browser
) -> None:
    """The page judged its token's expiry (the server's clock) on the phone's clock: two hours
    fast, every token was expired at birth, and every call and page renewed it (14 refreshes in
    seven pages, each rotating the cookie, against a limit of 30 a minute)."""
    async with device(full_browser, server, phone=True) as phone_tab:
        await phone_tab.page.clock.install(time=time.time() + 2 * HOUR_MS / 1000)
        refreshes: list[str] = []
        phone_tab.page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/api/auth/refresh") else None)
        phone = await phone_tab.open("/")
        await phone.locator("#session-name-input").fill("Tuesday notes")
        await phone.locator("#new-session").click()
        await expect(phone).to_have_url(re.compile(r"/session/"))
        await expect(phone.locator(LIVE)).to_be_visible()
        for path in ("/", "/streams", "/history", "/"):
            page = await phone_tab.open(path)
            await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
        await expect(page.locator("#recent-list")).to_contain_text("Tuesday notes")
        assert refreshes == [], refreshes  # a fresh guest's token lives an hour: nothing was due
        await readable(page)
