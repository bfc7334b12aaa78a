"""In Chromium: a /history page open while its history is deleted says so (audit "returning" F1).

It listened only to the history's own events: a history the guest sweep deleted (or an operator)
stayed on screen "Live", with its totals, its sessions and an Export answered 401 unsaid."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis
from playwright.async_api import Page, expect

from handlers.guest_retention import GUEST_SWEEPER
from storage.clock import Clock
from tests.admin.test_web_deleted_open import admin_delete
from tests.browser import Tab
from tests.helpers import RedisProcess, ServerUnderTest

IDLE_S = 3600
ACCESS_TTL_S = 60
PLAYED_MS = 9000


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose guests idle out after an hour, on a clock the test moves (Redis flushed first:
    the sweep forgets every gone guest there)."""
    from tests.conftest import start_server

    srv = await start_server(
        redis_process.url, tmp_path, clock=Clock(), guest_token_ttl_s=ACCESS_TTL_S, guest_idle_s=IDLE_S
    )
    yield srv
    await srv.stop()


async def guest_page(tab: Tab, path: str) -> tuple[Page, str, str]:
    """``path`` opened by a new browser, which makes its guest: (page, user id, its token)."""
    page = await tab.open(path)
    await expect(page.locator("#identity-name")).to_be_visible()
    token = await tab.stored_token()
    assert token is not None
    user_id = await page.evaluate("JSON.parse(localStorage.getItem('sessionhub.identity')).user_id")
    return page, str(user_id), str(token["token"])


async def guest_history_open(tab: Tab, server: ServerUnderTest) -> tuple[Page, str]:
    """/history opened by a new browser (it makes its guest), one play on it shown: (page, user id)."""
    page, user_id, token = await guest_page(tab, "/history")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    now_ms = server.services.clock.now_ms()
    played = {
        "item_id": "book",
        "device_id": "car",
        "client_id": "c1",
        "started_at": now_ms - PLAYED_MS,
        "ended_at": now_ms,
        "item": {"title": "The Quiet Hour"},
    }
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/listening/upload", json=played, headers=headers) as answer:
            assert answer.status == 201, await answer.text()
    await expect(page.locator("#total")).to_have_text("9 s")
    await expect(page.locator("#sessions li")).to_have_count(1)
    return page, user_id


async def swept(server: ServerUnderTest, user_id: str) -> None:
    """Time passes beyond the guest's idle time and its last token; the sweep forgets it."""
    server.services.clock.shift_ms += (IDLE_S + ACCESS_TTL_S + 60) * 1000
    result = await asyncio.wait_for(server.app[GUEST_SWEEPER].sweep(), timeout=30)
    assert result.guests_forgotten >= 1 and result.sessions_deleted >= 1, result
    assert not await server.services.redis.exists(server.services.keys.user_profile(user_id))


async def test_a_history_the_guest_sweep_deleted_says_the_guest_was_forgotten(
    server: ServerUnderTest, tab: Tab
) -> None:
    page, user_id = await guest_history_open(tab, server)
    await page.locator("#export-csv").focus()
    await swept(server, user_id)
    gone = page.locator("#history-gone")
    await expect(gone).to_be_visible()
    await expect(page.locator("#history-gone-title")).to_have_text("History deleted")
    message = page.locator("#history-gone-message")
    await expect(message).to_contain_text("the guest was forgotten")
    await expect(message).to_contain_text("within 60 minutes")
    await expect(message).not_to_contain_text("on the server")
    # What no longer exists is not shown as if it did: totals, sessions, Export, "Live".
    for gone_part in ("#total", "#sessions", "#export-csv", "#clear", "#connection"):
        await expect(page.locator(gone_part)).to_be_hidden()
    await expect(page.locator("body")).to_have_attribute("data-history-gone", "forgotten")
    # The keyboard's focus was on Export, which went: it is on what happened now, and the next
    # step is one Tab away.
    await expect(page.locator("#history-gone-title")).to_be_focused()
    await page.keyboard.press("Tab")
    start_over = page.locator("#history-start-over")
    await expect(start_over).to_be_focused()
    await expect(page.locator("#history-gone-next")).to_be_hidden()
    await page.keyboard.press("Enter")
    # A new guest, with a history of its own (empty), live.
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(gone).to_be_hidden()
    await expect(page.locator("#count")).to_have_text("0")
    new_user = await page.evaluate("JSON.parse(localStorage.getItem('sessionhub.identity')).user_id")
    assert new_user != user_id


async def test_a_history_an_operator_deleted_says_so_and_offers_the_player(server: ServerUnderTest, tab: Tab) -> None:
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    page, _ = await guest_history_open(tab, server)
    history_id = await page.locator("body").get_attribute("data-history-id")
    assert history_id
    await admin_delete(server, history_id)
    await expect(page.locator("#history-gone")).to_be_visible()
    message = page.locator("#history-gone-message")
    await expect(message).to_contain_text("deleted on the server")
    await expect(message).not_to_contain_text("forgotten")
    await expect(page.locator("#export-csv")).to_be_hidden()
    await expect(page.locator("#connection")).to_be_hidden()
    await expect(page.locator("#history-start-over")).to_be_hidden()
    await expect(page.locator("#history-gone-next")).to_have_attribute("href", "/player")
    # On a phone, nothing of it reaches past the screen's edge.
    wide = await page.evaluate("document.documentElement.scrollWidth")
    assert wide <= 390, wide
