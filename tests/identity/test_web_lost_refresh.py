"""In Chromium: a refresh whose answer the network lost keeps the device signed in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from playwright.async_api import Browser, Route, expect
from redis.asyncio import Redis

from handlers.auth_cookie import COOKIE_NAME
from tests.browser import Tab, new_tab
from tests.helpers import RedisProcess, ServerUnderTest
from tests.identity.test_web import SHORT_TTL_S, stored_after_close, until_expired


@pytest_asyncio.fixture
async def short_lived(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, guest_token_ttl_s=SHORT_TTL_S)
    yield srv
    await srv.stop()


async def test_a_refresh_whose_answer_was_lost_is_sent_again_and_keeps_the_device(
    short_lived: ServerUnderTest, browser: Browser
) -> None:
    """The server rotated the cookie but its answer never arrived: the page sends the refresh
    again and is given the rotation's cookie, so the browser holds the credential the server
    holds (before, it kept the replaced one, and its next refresh after the grace time was taken
    for a stolen cookie: the device signed out, a guest's things lost)."""
    server = short_lived
    tab = await new_tab(browser, server)
    context = tab.page.context
    try:
        page = await tab.open("/streams")
        await page.locator("#title-input").fill("Evening stream")
        await page.locator("#create-button").click()  # a first visit owns nothing until it makes something
        await expect(page).to_have_url(re.compile(r"/streams/[0-9a-f-]{36}$"))
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
        user_id = await page.locator("#identity").get_attribute("data-user-id")
        dashboard = page.url.removeprefix(server.url)
        await page.close()
        left = await stored_after_close(context, server.url)
        await until_expired(server, left["token"], timeout_s=SHORT_TTL_S + 10)

        lost_cookies: list[str] = []

        async def lose_the_first_answer(route: Route) -> None:
            if lost_cookies:
                await route.continue_()
                return
            # The server rotates (the request made as the page made it, outside the browser, whose
            # cookie jar must not hear of the answer); the page never does.
            headers = await route.request.all_headers()
            async with (
                aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
                http.post(route.request.url, data=route.request.post_data, headers=headers) as answer,
            ):
                assert answer.status == 200, await answer.text()
                lost_cookies.append(answer.headers.get("Set-Cookie", ""))
            await route.abort("connectionreset")

        await context.route("**/api/auth/refresh", lose_the_first_answer)
        back = Tab(page=await context.new_page(), base_url=server.url)
        page = await back.open(dashboard)  # the owner's dashboard: it needs the identity back
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        await expect(page.locator("#identity")).to_have_attribute("data-user-id", user_id or "")
        await expect(page.locator("#identity-lost")).to_have_count(0)
        assert lost_cookies and COOKIE_NAME in lost_cookies[0]
        held = {c["name"]: c["value"] for c in await context.cookies(server.url + "/api/auth/refresh")}
        lost_value = lost_cookies[0].split(f"{COOKIE_NAME}=", 1)[1].split(";", 1)[0]
        assert held[COOKIE_NAME] == lost_value  # the credential the server holds, not the replaced one
    finally:
        await context.close()
