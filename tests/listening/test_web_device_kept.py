"""In Chromium: the player's device id survives the site's storage cleared with its cookies kept
(audit "returning" F5).

The identity came back from the cookie, but the player made a new random device id: the
person's own plays on this very browser read "Another browser" on /history, and a resume there
started a new session. The id is made from the signed-in device (``GET /api/auth/me``'s
``device_id``), which the cookie brings back."""

from __future__ import annotations

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest

DEVICE_KEY = "sessionhub.listening.device"  # web/js/player.js


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def played_on(server: ServerUnderTest, token: dict[str, object], device: str) -> None:
    """A minute of an item played on ``device``, as its player reports it."""
    now_ms = server.services.clock.now_ms()
    played = {
        "item_id": "demo-song-3",
        "device_id": device,
        "client_id": "c1",
        "started_at": now_ms - 60_000,
        "ended_at": now_ms,
        "item": {"title": "Four Forty"},
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/api/listening/upload", json=played, headers=bearer(str(token["token"]))
        ) as answer:
            assert answer.status == 201, await answer.text()


def listening_device_of(device_id: str) -> str:
    """web/js/player.js listeningDeviceOf: FNV-1a (32 bits) of the device id's UTF-8."""
    value = 0x811C9DC5
    for byte in device_id.encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"web-{value:08x}"


async def test_plays_stay_this_browsers_after_its_storage_is_cleared_with_the_cookie_kept(
    server: ServerUnderTest, tab: Tab
) -> None:
    player = await tab.open("/player")  # a new browser: the page makes its guest
    await expect(player.locator("#connection")).to_have_attribute("data-state", "live")
    token = await tab.stored_token()
    assert token is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/auth/me", headers=bearer(str(token["token"]))) as answer:
            me = await answer.json()
    assert me["device_id"]
    # The id the player's reports carry is made from the signed-in device, before any play.
    device = await player.evaluate(f"localStorage.getItem('{DEVICE_KEY}')")
    assert device == listening_device_of(me["device_id"])
    await played_on(server, token, device)

    await player.evaluate("localStorage.clear()")  # the site's storage, not its cookies
    history = await tab.open("/history")
    await expect(history.locator("#connection")).to_have_attribute("data-state", "live")
    shown = history.locator("#sessions li.listening-row .device")
    await expect(shown).to_have_text("This browser")
    await expect(shown).to_have_attribute("data-device-id", device)
    # The same identity, back from the cookie.
    assert await history.evaluate("JSON.parse(localStorage.getItem('sessionhub.identity')).user_id") == me["user_id"]

    player = await tab.open("/player")
    await expect(player.locator("#connection")).to_have_attribute("data-state", "live")
    assert await player.evaluate(f"localStorage.getItem('{DEVICE_KEY}')") == device
