"""In Chromium: a link ended by a sign-out says what the person can actually do, and logs nothing.

/tg_auth said "Ask for a new link on a signed-in device." right after "sign out everywhere" (no
device is signed in any more), said nothing of sending /login again for a chat bot's link (no
device made it), offered "Open my active session" to a browser that is nobody, and its look at
the link (a 401) was a console error on every ended link."""

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from auth.claims import Permission
from tests.browser import new_tab
from tests.helpers import ServerUnderTest
from tests.identity.support import Browser as AuthBrowser
from tests.identity.test_passkeys import pserver  # noqa: F401  (a fixture)
from tests.identity.test_signout_ends import _bot_link, _device_link

pytestmark = pytest.mark.timeout(120)


async def _ended_links(server: ServerUnderTest) -> tuple[str, str]:
    """A device's link and a bot's link, each ended by a "Sign out everywhere" of its identity."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        guest = AuthBrowser(http, server.url)
        await guest.guest()
        device_link = await _device_link(guest)
        account = server.token("ada", perms=(Permission.READ_OWN, Permission.CREATE, Permission.UPDATE))
        bot_link = await _bot_link(server, http, account)
        ada = AuthBrowser(http, server.url)
        assert (
            await ada.post("/api/auth/one_time", json={"token": await _bot_link(server, http, account)})
        ).status == 200
        for who in (guest, ada):  # "Sign out everywhere", each
            out = await who.post("/api/auth/logout_all", json={}, headers={"Authorization": f"Bearer {who.token}"})
            assert out.status == 200, out.body
    return device_link, bot_link


async def test_an_ended_link_offers_what_can_still_be_done(iserver: ServerUnderTest, browser: Browser) -> None:
    """This server offers no passkeys (no SESSIONHUB_PUBLIC_URL): the page advised "Sign in with a
    passkey" all the same. It advises what works here; a server with passkeys: below."""
    device_link, bot_link = await _ended_links(iserver)
    for token, advice in (
        (device_link, "was signed out since. Ask for a new link on a device still signed in."),
        (bot_link, "Send /login to the bot again for a new link."),
    ):
        tab = await new_tab(browser, iserver)
        try:
            page = await tab.open(f"/tg_auth?token={token}")
            await expect(page.locator("#login-heading")).to_have_text("This link was ended by a sign-out")
            await expect(page.locator("body")).to_have_attribute("data-passkeys", "off")
            await expect(page.locator("#login-status")).to_contain_text(advice)
            await expect(page.locator("#login-status")).not_to_contain_text("passkey")
            await expect(page.locator("#login-passkey")).to_have_count(0)
            await expect(page.get_by_text("signed-in device")).to_have_count(0)
            # Nobody here: no active session to open; the start page instead.
            await expect(page.get_by_role("link", name="Open my active session")).to_have_count(0)
            await expect(page.get_by_role("link", name="Back to the start page")).to_be_visible()
            assert [line for line in tab.console if line.startswith("error")] == [], tab.console
            assert not tab.errors, tab.errors
        finally:
            await tab.page.context.close()


async def test_an_ended_link_offers_a_passkey_where_the_server_does(pserver: ServerUnderTest, browser: Browser) -> None:  # noqa: F811
    device_link, bot_link = await _ended_links(pserver)
    for token, advice in (
        (device_link, "Sign in with a passkey, or ask for a new link on a device still signed in."),
        (bot_link, "Send /login to the bot again for a new link, or sign in with a passkey."),
    ):
        tab = await new_tab(browser, pserver)
        try:
            page = await tab.open(f"/tg_auth?token={token}")
            await expect(page.locator("body")).to_have_attribute("data-passkeys", "offered")
            await expect(page.locator("#login-status")).to_contain_text(advice)
            await expect(page.locator("#login-passkey")).to_be_visible()
            assert not tab.errors, tab.errors
        finally:
            await tab.page.context.close()
