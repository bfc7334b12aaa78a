"""In Chromium: a page left open longer than its access token lives still does what it is asked.

The token outlived by the open connection gets the next event refused (`unauthorized`, nothing
done); the page's connection takes a fresh token (`renew_token`, else it reconnects) and sends
the event again, instead of showing "token expired" and losing the click."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect
from redis.asyncio import Redis

from tests.browser import new_tab
from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.test_web import stored, until_expired
from tests.streams.helpers import create_stream, http

pytestmark = pytest.mark.timeout(180)

# The access tokens' life: short, so that a page outlives its token for real (the real clock:
# tokens are checked against it), and long enough for a reconnection to use its fresh one.
TTL_S = 6


@pytest_asyncio.fixture
async def short_lived(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, guest_token_ttl_s=TTL_S)
    yield srv
    await srv.stop()


async def outlived(server: ServerUnderTest, page: Page) -> None:
    """Wait until the token the page connected with has expired, the page still open."""
    await until_expired(server, str((await stored(page))["token"]), timeout_s=TTL_S + 30)


async def test_a_clip_clicked_after_the_token_ran_out_on_an_open_page_is_kept(
    short_lived: ServerUnderTest, browser: Browser
) -> None:
    server = short_lived
    session_id = await create_stream(server, title="All-nighter")
    status, body = await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    assert status == 200, body
    tab = await new_tab(browser, server)
    try:
        page = await tab.open(f"/watch/{session_id}")  # a first visit: the viewer becomes a guest
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#clip-button")).to_be_enabled()
        await outlived(server, page)
        await page.locator("#note-input").fill("the comeback")
        await page.locator("#clip-button").click()
        await expect(page.locator("#confirmation")).to_contain_text("Clipped!")
        await expect(page.locator("#mine li")).to_have_count(1)
        await expect(page.locator("#mine li")).to_contain_text("the comeback")
        assert not tab.errors, tab.errors + tab.console
    finally:
        await tab.page.context.close()


async def test_a_done_pressed_after_the_token_ran_out_on_an_open_session_page_closes_it(
    short_lived: ServerUnderTest, browser: Browser
) -> None:
    server = short_lived
    tab = await new_tab(browser, server)
    try:
        page = await tab.open("/")
        await page.locator("#new-session").click()  # a first visit: the person becomes a guest
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#done-button")).to_be_enabled()
        await outlived(server, page)
        await page.locator("#done-button").click()
        await expect(page.locator("#session-state")).to_have_text("Closed")
        assert not tab.errors, tab.errors + tab.console
    finally:
        await tab.page.context.close()
