"""In Chromium: a page whose device is signed out says "Not signed in", and connects again once
this browser has an identity again.

It said "Offline — reconnecting…" for ever: the server's disconnect after `signed_out`
overwrote the badge, and socket.io-client does not reconnect after a server's disconnect. A
sign-in in another tab of the browser was not followed either: the page stayed offline."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from playwright.async_api import Browser, expect

from tests.browser import TOKEN_KEY, Tab
from tests.helpers import ServerUnderTest
from tests.streams.helpers import create_stream, http


async def test_a_signed_out_page_says_so_and_connects_again_once_signed_in(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    stream_id = await create_stream(server, user="alice")
    assert (await http(server, "POST", f"/api/streams/{stream_id}/state", json={"action": "start"}))[0] == 200
    page = await tab.open(f"/watch/{stream_id}")  # no token: the page becomes a guest, a device
    badge = page.locator("#connection")
    await expect(page.locator("#clip-button")).to_be_enabled()
    stored = await tab.stored_token()
    assert stored is not None
    headers = {"Authorization": f"Bearer {stored['token']}", "Origin": server.url, "X-Sessionhub-Client": "web"}
    async with aiohttp.ClientSession() as client:  # "Sign out everywhere", from another device
        async with client.post(f"{server.url}/api/auth/logout_all", json={}, headers=headers) as answer:
            assert answer.status == 200, await answer.text()

    await expect(badge).to_have_attribute("data-state", "unauthorized")
    await expect(badge).to_have_text("Not signed in")
    # The server's disconnect that follows the sign-out changes nothing (a bounded look: it came
    # within milliseconds and said "Offline — reconnecting…" for ever).
    until = time.monotonic() + 2
    while time.monotonic() < until:
        assert await badge.get_attribute("data-state") == "unauthorized"
        await asyncio.sleep(0.1)

    # This browser signs in again in another of its tabs: the page follows.
    other = await page.context.new_page()
    await other.goto(server.url + "/static/css/app.css")  # this origin's storage, no page script
    record = {"token": server.token("carol"), "expires_at": int(time.time()) + 3600, "guest": False}
    await other.evaluate(f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(json.dumps(record))})")
    await expect(badge).not_to_have_attribute("data-state", "unauthorized")
    await expect(page.locator("#clip-button")).to_be_enabled()
