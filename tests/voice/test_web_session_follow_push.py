"""`/session` follows the active session by the server's push, on its own connection: another
device's new session shows at once, with no poll, no focus and no visibility change, while this
device's FAB records its own session (and relays nothing); a change made while the page was
offline shows once its connection is back."""

from __future__ import annotations

from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest

# Well under the 15 s the page's poll took (web/js/session.js, CATCH_UP_MS): only a push is this soon.
PUSHED_MS = 8_000

NO_FOCUS = """() => {
  for (const name of ["focus", "visibilitychange"]) {
    window.addEventListener(name, (e) => e.stopImmediatePropagation(), true);
    document.addEventListener(name, (e) => e.stopImmediatePropagation(), true);
  }
}"""


async def post(http: aiohttp.ClientSession, server: ServerUnderTest, path: str, body: dict[str, Any]) -> Any:
    """The other device: a request with alice's token."""
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with http.post(server.url + path, json=body, headers=headers) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def shows_session(page: Page, session_id: str, *, timeout: int = PUSHED_MS) -> None:
    await expect(page.locator("#session-id")).to_have_text(session_id, timeout=timeout)
    await expect(page.locator(f"#my-session-list li[data-session-id='{session_id}']")).to_have_count(1)


async def test_another_devices_session_shows_on_the_page_at_once(server: ServerUnderTest, tab: Tab) -> None:
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    page = await tab.open("/session")
    await expect(page.locator("#empty-state")).to_be_visible()
    await page.evaluate(NO_FOCUS)
    await page.evaluate("window.__samePage = true")

    # This device records: its FAB stays on its own session and relays no other.
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    recorded = await server.services.voice.active_id("alice")
    assert recorded is not None
    await shows_session(page, recorded)

    async with aiohttp.ClientSession() as http:
        made = (await post(http, server, "/voicebot/create_session", {}))["session_id"]
        await shows_session(page, made)
        await expect(page).to_have_url(f"{server.url}/session/{made}")
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")

        # Closed elsewhere (the bot's /done: the active session is cleared): the page shows it closed.
        await post(http, server, "/voicebot/bot/command", {"text": "/done"})
        await expect(page.locator("#session-state")).to_have_text("Closed", timeout=PUSHED_MS)
        await expect(page.locator("#session-id")).to_have_text(made)
        assert await server.services.voice.active_id("alice") is None

        # Offline meanwhile: the connection made again follows again, and its answer shows it.
        await gate.cut()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
        later = (await post(http, server, "/voicebot/create_session", {}))["session_id"]
        gate.release()
        await shows_session(page, later)
        await expect(page.locator("#session-state")).to_have_text("Open")
    assert await page.evaluate("window.__samePage === true")  # no reload
