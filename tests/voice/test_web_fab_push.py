"""The FAB follows the user's active session as it changes elsewhere -- the chat bot's /start,
/session and /done, another device's new session -- at once, with no reload, focus or poll."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest

# Well under the 15 s poll the FAB had (web/js/fab.js): only the push brings a change this soon.
PUSHED_MS = 8_000


async def post(http: aiohttp.ClientSession, server: ServerUnderTest, path: str, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with http.post(server.url + path, json=body, headers=headers) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def shows(page: Page, status: str, label: str) -> None:
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", status, timeout=PUSHED_MS)
    await expect(page.locator(".fab-label")).to_have_text(label, timeout=PUSHED_MS)


async def test_the_fab_follows_the_bot_and_other_devices_live(server: ServerUnderTest, tab: Tab) -> None:
    first = await server.create_session("alice", name="before")
    await server.services.voice.set_active("alice", first)
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    await shows(page, "ready", "Ready")
    # Nothing may bring the change but the push: no focus, no visibility change, no poll.
    await page.evaluate(
        """() => {
        for (const name of ["focus", "visibilitychange"]) {
          window.addEventListener(name, (e) => e.stopImmediatePropagation(), true);
          document.addEventListener(name, (e) => e.stopImmediatePropagation(), true);
        }
      }"""
    )
    async with aiohttp.ClientSession() as http:
        started = (await post(http, server, "/voicebot/bot/command", {"text": "/start"}))["active_session"]
        # The FAB is on the new session: its status pictogram follows that session's events.
        recorder = Client(server.url, server.token("alice"))
        try:
            await recorder.connect()
            await expect(page.locator("#fab-status")).to_have_attribute("data-status", "ready", timeout=PUSHED_MS)
            ack = await recorder.call(
                "set_session_status", {"session_id": started["session_id"], "status": "recording"}
            )
            assert ack["ok"], ack
            await shows(page, "recording", "Recording elsewhere")
            ack = await recorder.call("set_session_status", {"session_id": started["session_id"], "status": "paused"})
            assert ack["ok"], ack
            await shows(page, "paused", "Paused")
        finally:
            await recorder.close()

        await post(http, server, "/voicebot/bot/command", {"text": f"/session {first}"})  # back to the first
        await expect(page.locator("#fab-rec")).to_be_enabled(timeout=PUSHED_MS)
        await shows(page, "ready", "Ready")
        await post(http, server, "/voicebot/bot/command", {"text": "/done"})  # closes the first, clears it
        await shows(page, "closed", "Closed")
        await expect(page.locator("#fab-done")).to_be_disabled()
        made = (await post(http, server, "/voicebot/create_session", {}))["session_id"]  # another device's New
        await shows(page, "ready", "Ready")
        await expect(page.locator("#fab-done")).to_be_enabled(timeout=PUSHED_MS)
        assert await server.services.voice.active_id("alice") == made
    assert not tab.errors, tab.errors
