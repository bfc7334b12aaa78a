"""In Chromium: a rename shows on every page of the person's other devices, not only those that
follow the active session: each page's connection follows the user (``follow_user``), and its
follow's answer carries the name, so a page loading while the rename lands shows it too."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import SocketGate, Tab, new_tab
from tests.helpers import ServerUnderTest

pytestmark = pytest.mark.timeout(180)

# Well under the time a person would wait: only the server can bring the name to the other device.
PUSHED_MS = 8_000
POLLING = "**/socket.io/?*transport=polling*"


async def rename(server: ServerUnderTest, user: str, name: str) -> None:
    """Rename ``user`` as another device of theirs does."""
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {server.token(user)}"}
        async with http.patch(server.url + "/api/auth/me", json={"name": name}, headers=headers) as resp:
            assert resp.status == 200, await resp.text()


async def live_history(tab: Tab) -> Page:
    page = await tab.open("/history")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await page.evaluate("window.__samePage = true")
    return page


async def test_a_name_saved_on_one_device_shows_on_the_others_history_page(
    server: ServerUnderTest, browser: Browser
) -> None:
    """/history follows no active session: its badge kept the old name until a reload."""
    laptop, phone = await new_tab(browser, server), await new_tab(browser, server)
    try:
        for device in (laptop, phone):
            await device.use_token(server.token("alice"))
        renaming = await laptop.open("/session")
        await expect(renaming.locator("#identity")).to_have_attribute("data-state", "known")
        watching = await live_history(phone)
        await expect(watching.locator("#identity-name")).to_have_text("alice")

        await renaming.locator("#identity-name").click()
        await renaming.locator("#identity-name-input").fill("Ada Lovelace")
        await renaming.locator("#identity-name-input").press("Tab")
        await renaming.keyboard.press("Enter")  # Save name
        await expect(renaming.locator("#identity-name")).to_have_text("Ada Lovelace")

        await expect(watching.locator("#identity-name")).to_have_text("Ada Lovelace", timeout=PUSHED_MS)
        # And again: each rename, in order.
        await rename(server, "alice", "Ada")
        await expect(watching.locator("#identity-name")).to_have_text("Ada", timeout=PUSHED_MS)
        assert await watching.evaluate("window.__samePage === true")  # no reload
        assert not laptop.errors and not phone.errors, laptop.errors + phone.errors
    finally:
        await laptop.page.context.close()
        await phone.page.context.close()


@pytest.mark.parametrize("path", ["/history", "/session"])
async def test_a_rename_landing_while_the_page_loads_shows_once_it_follows(
    server: ServerUnderTest, tab: Tab, path: str
) -> None:
    """The page read its name (GET /api/auth/me), then the rename landed before its connection
    followed: it was told nothing, and showed the old name until its next reconnection."""
    gate = SocketGate()
    await gate.install(tab.page)
    gate.holding = True  # the page's connections wait at the door: its first follow comes later
    await tab.page.route(POLLING, lambda route: route.abort("internetdisconnected"))
    await tab.use_token(server.token("alice"))
    page = await tab.open(path)
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await expect(page.locator("#identity-name")).to_have_text("alice")
    await page.evaluate("window.__samePage = true")
    async with asyncio.timeout(10):  # the page did try to connect (held, not yet let in)
        while not gate.held:
            await asyncio.sleep(0.02)

    await rename(server, "alice", "Ada")
    await page.unroute(POLLING)
    gate.release()
    await expect(page.locator("#identity-name")).to_have_text("Ada", timeout=PUSHED_MS)
    assert await page.evaluate("window.__samePage === true")  # no reload
    assert gate.joined >= 1


@pytest.mark.parametrize("path", ["/streams", "/api-docs"])
async def test_a_name_saved_elsewhere_shows_on_a_page_without_a_connection_of_its_own(
    server: ServerUnderTest, tab: Tab, path: str
) -> None:
    """The streams list and the API docs open no connection for themselves: their top bar opens
    one (once it knows who the browser is) to follow the user's renames."""
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    page = await tab.open(path)
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await expect(page.locator("#identity-name")).to_have_text("alice")
    await page.evaluate("window.__samePage = true")
    async with asyncio.timeout(10):  # its connection was let in (before or after the rename: either way)
        while gate.joined < 1:
            await asyncio.sleep(0.02)
    await rename(server, "alice", "Ada")
    await expect(page.locator("#identity-name")).to_have_text("Ada", timeout=PUSHED_MS)
    await rename(server, "alice", "Ada L.")
    await expect(page.locator("#identity-name")).to_have_text("Ada L.", timeout=PUSHED_MS)
    assert await page.evaluate("window.__samePage === true")  # no reload
