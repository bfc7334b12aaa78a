"""A FAB recording when its device is signed out (every device, from another one): the microphone
was left on, the FAB saying "Offline: still recording on this device…" beside "Not signed in",
for audio that could never upload (audit "returning" F2). It stops, and says why; what it
recorded is kept on the device, offered for download."""

from __future__ import annotations

import re

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.voice.test_web_fab import fab_ready


async def test_a_recording_stops_when_its_device_is_signed_out_elsewhere(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")  # a first visit: the session made makes the browser a guest
    await page.locator("#session-name-input").fill("first")
    await page.locator("#new-session").click()
    await page.wait_for_url(re.compile("/session/"))
    page = await tab.open("/")
    await fab_ready(page)
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording", timeout=15_000)
    token = await page.evaluate('JSON.parse(localStorage.getItem("sessionhub.token")).token')
    # "Sign out everywhere", pressed on another device of the same identity.
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}", "X-Sessionhub-Client": "test"}
        async with http.post(f"{server.url}/api/auth/logout_all", headers=headers) as response:
            assert response.status == 200, await response.text()
    await expect(page.locator("#fab-message")).to_have_text(re.compile("This device was signed out: recording stopped"))
    await expect(page.locator("#fab-status")).not_to_have_attribute("data-status", "recording")
    await expect(page.locator("#fab-held-download")).to_be_visible()
