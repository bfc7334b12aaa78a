"""In Chromium: a page refused by the connections-per-address cap says so, and gets in later.

A crowd behind one address (a school's, an office's NAT) past
``SESSIONHUB_MAX_CONNECTIONS_PER_ADDRESS`` is refused ``429 rate_limited`` at the handshake. The
page said "Offline — reconnecting…" on a network that works, so a person checked their Wi-Fi.
A WebSocket's refusal shows no status, but the long-polling handshake tried after it does: the
page names the cap, and keeps trying, so a place another connection gives back is taken."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from tests.browser import Tab, new_tab
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server that takes one Socket.IO connection per address (every page here shares 127.0.0.1)."""
    srv = await start_server(redis_process.url, tmp_path, max_connections_per_address=1)
    yield srv
    await srv.stop()


async def test_a_page_past_the_connections_per_address_says_so_and_gets_in_once_there_is_room(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    await tab.use_token(server.token("alice"))
    first = await tab.open("/history")
    await expect(first.locator("#connection")).to_have_attribute("data-state", "live")

    crowd = await new_tab(browser, server)
    try:
        await crowd.use_token(server.token("bob"))
        second = await crowd.open("/history")
        badge = second.locator("#connection")
        await expect(badge).to_have_attribute("data-state", "crowded")
        await expect(badge).to_have_text("Too many connections from this network — retrying…")

        await first.context.close()  # its place is given back: the crowded page takes it by itself
        await expect(badge).to_have_attribute("data-state", "live", timeout=30_000)
        assert not crowd.errors, crowd.errors
    finally:
        await crowd.page.context.close()
