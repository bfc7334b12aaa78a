"""In Chromium: a device link opened in a browser that already owns something asks first.

The link replaces the browser's identity (its refresh cookie). A guest who made sessions there
and saved the identity nowhere (no passkey) would lose them for good, without a word."""

from __future__ import annotations

import re
from urllib.parse import quote

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.identity.support import Browser as AuthBrowser

pytestmark = pytest.mark.timeout(180)


async def guest_with_a_session(tab: Tab, name: str) -> Page:
    """The page of a voice session a first visit made (the browser became a guest for it)."""
    page = await tab.open("/")
    await page.locator("#session-name-input").fill(name)
    await page.locator("#new-session").click()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    return page


async def device_link(page: Page, server: ServerUnderTest) -> str:
    await page.locator("#identity-name").click()
    await page.locator("#identity-link").click()
    url = await page.locator("#identity-link-url").input_value()
    return url.removeprefix(server.url)


async def test_a_guest_who_owns_sessions_is_asked_before_a_device_link_replaces_them(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    first = await new_tab(browser, iserver)
    second = await new_tab(browser, iserver)
    try:
        phone = await guest_with_a_session(first, "Made on the phone")
        phone_user = await phone.locator("#identity").get_attribute("data-user-id")
        laptop = await guest_with_a_session(second, "Made on the laptop")
        laptop_user = await laptop.locator("#identity").get_attribute("data-user-id")
        link = await device_link(phone, iserver)

        asking = await second.open(link)
        await expect(asking.locator("#login-confirm")).to_be_visible()
        await expect(asking.locator("#login-heading")).to_have_text("Sign this browser in as someone else?")
        await expect(asking.locator("#login-status")).to_contain_text("those sessions stay with the old identity")
        # Nothing happened yet: "Keep this browser as it is" leaves it the laptop's guest.
        await asking.locator("#login-keep").click()
        await expect(asking.locator("#identity")).to_have_attribute("data-user-id", str(laptop_user))
        await expect(asking.locator("#recent-list li")).to_contain_text("Made on the laptop")

        # Asked again, the person goes ahead: the link was not used up by asking.
        asking = await second.open(link)
        await asking.locator("#login-continue").click()
        # /session, which shows the phone's active session as /session/<id> once it has read it.
        phone_session = phone.url.rsplit("/", 1)[1]
        await expect(asking).to_have_url(re.compile(rf"/session(/{phone_session})?$"))
        await expect(asking.locator("#identity")).to_have_attribute("data-user-id", str(phone_user))
        assert not first.errors and not second.errors, first.errors + second.errors
    finally:
        await first.page.context.close()
        await second.page.context.close()


async def test_a_browser_that_is_nobody_yet_signs_in_with_a_link_at_once(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    first = await new_tab(browser, iserver)
    second = await new_tab(browser, iserver)
    try:
        phone = await guest_with_a_session(first, "Made on the phone")
        phone_user = await phone.locator("#identity").get_attribute("data-user-id")
        signed_in = await second.open(await device_link(phone, iserver))
        phone_session = phone.url.rsplit("/", 1)[1]
        await expect(signed_in).to_have_url(re.compile(rf"/session(/{phone_session})?$"))
        await expect(signed_in.locator("#identity")).to_have_attribute("data-user-id", str(phone_user))
    finally:
        await first.page.context.close()
        await second.page.context.close()


async def test_a_device_linked_after_the_page_loaded_is_listed_when_the_panel_opens(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """The panel listed the devices read when the page loaded: the phone linked from it was not
    there, even closed and opened again, and could not be signed out from it (audit "returning")."""
    first = await new_tab(browser, iserver)
    second = await new_tab(browser, iserver)
    try:
        laptop = await guest_with_a_session(first, "Made on the laptop")
        link = await device_link(laptop, iserver)  # with the panel open
        await expect(laptop.locator("#identity-devices li")).to_have_count(1)
        phone = await second.open(link)
        await expect(phone.locator("#identity")).to_have_attribute("data-state", "known")
        await laptop.locator("#identity-name").click()  # closed
        await expect(laptop.locator("#identity-panel")).to_have_count(0)
        await laptop.locator("#identity-name").click()
        await expect(laptop.locator("#identity-devices li")).to_have_count(2)
    finally:
        await first.page.context.close()
        await second.page.context.close()


async def test_a_link_made_on_a_page_opens_that_page_on_the_other_device(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """A streamer linking their phone from the stream's dashboard landed on the voice page
    (/session), and had to find the dashboard again."""
    first = await new_tab(browser, iserver)
    second = await new_tab(browser, iserver)
    try:
        laptop = await first.open("/streams")
        await laptop.locator("#title-input").fill("Raid night")
        await laptop.locator("#create-button").click()
        await laptop.wait_for_url("**/streams/*")
        dashboard = laptop.url.removeprefix(iserver.url)
        link = await device_link(laptop, iserver)
        assert link.endswith("&next=" + dashboard.replace("/", "%2F")), link
        phone = await second.open(link)
        await expect(phone).to_have_url(iserver.url + dashboard)
        await expect(phone.locator("#stream-title")).to_have_text("Raid night")
        assert not first.errors and not second.errors, first.errors + second.errors
    finally:
        await first.page.context.close()
        await second.page.context.close()


async def test_a_link_leads_only_to_this_servers_pages(iserver: ServerUnderTest, browser: Browser) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        owner = AuthBrowser(http, iserver.url)
        await owner.guest()
        made = await owner.call("POST", "/api/auth/link?next=/s/abc-1/remix")
        assert made.status == 201 and made.body["url"].endswith("&next=%2Fs%2Fabc-1%2Fremix"), made.body
        for away in ("//evil.example", "/\\evil.example", "https://evil.example", "/a b", "/" + "a" * 201):
            refused = await owner.call("POST", f"/api/auth/link?next={quote(away, safe='')}")
            assert (refused.status, refused.body["error"]) == (400, "invalid_payload"), (away, refused.body)
        plain = await owner.call("POST", "/api/auth/link")
        token = plain.body["url"].split("token=", 1)[1]
    # A link whose next was changed by hand to lead off the site opens /session instead.
    tab = await new_tab(browser, iserver)
    try:
        page = await tab.open(f"/tg_auth?token={token}&next=%2F%2Fevil.example")
        await expect(page).to_have_url(re.compile(rf"^{re.escape(iserver.url)}/session(/[^/]+)?$"))
    finally:
        await tab.page.context.close()


async def test_peeking_at_a_link_names_its_identity_and_leaves_it_usable(iserver: ServerUnderTest) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        first = AuthBrowser(http, iserver.url)
        user_id = (await first.guest()).body["user_id"]
        assert (await first.call("PATCH", "/api/auth/me", json={"name": "Ada"})).status == 200
        link = await first.call("POST", "/api/auth/link")
        token = link.body["url"].split("token=", 1)[1]
        second = AuthBrowser(http, iserver.url)
        for _ in range(2):  # looking twice uses nothing up
            peeked = await second.post("/api/auth/one_time/peek", json={"token": token})
            assert (peeked.status, peeked.cookie) == (200, None)
            assert peeked.body == {"usable": True, "user_id": user_id, "name": "Ada", "reason": "", "link": "device"}
        assert (await second.post("/api/auth/one_time", json={"token": token})).body["user_id"] == user_id
        # A link that cannot be used is the look's answer, not a refusal (a console error in a page).
        used = await second.post("/api/auth/one_time/peek", json={"token": token})
        assert (used.status, used.body) == (
            200,
            {"usable": False, "user_id": "", "name": "", "reason": "used", "link": ""},
        )
        cross_site = await AuthBrowser(http, iserver.url).post(
            "/api/auth/one_time/peek", json={"token": token}, origin="https://evil.example"
        )
        assert cross_site.status == 403


async def test_without_passkeys_on_the_server_no_passkey_sign_in_leads_to_a_refusal(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """This server has no SESSIONHUB_PUBLIC_URL: passkeys are off. The panel offered "Sign in with
    a passkey" anyway, and the lost-identity notice's button answered "passkeys need
    SESSIONHUB_PUBLIC_URL on this server", an operator's words; then, the same words at its press
    (audit "returning"). Now no way in is offered that cannot work: the notice offers none."""
    tab = await new_tab(browser, iserver)
    try:
        page = await guest_with_a_session(tab, "Mine")
        await page.locator("#identity-name").click()
        await expect(page.locator("#identity-passkey-status")).to_have_text("Passkeys are not set up on this server.")
        await expect(page.locator("#identity-panel #identity-passkey-signin")).to_be_hidden()

        user_id = await page.locator("#identity").get_attribute("data-user-id")
        await iserver.services.identities.revoke_all(str(user_id))
        page = await tab.open("/streams")
        await expect(page.locator("#identity-lost")).to_be_visible()
        answered = page.locator('#identity-lost #identity-passkey-signin[data-offered="false"]')
        await expect(answered).to_have_count(1)
        await expect(answered).to_be_hidden()
        await expect(page.locator("#identity-lost")).not_to_contain_text("SESSIONHUB_PUBLIC_URL")
        await expect(page.locator("#identity-start-over")).to_be_visible()  # the way forward stays
    finally:
        await tab.page.context.close()


async def test_the_other_tabs_of_a_browser_signed_in_as_someone_else_follow_at_once(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    """A link's sign-in in one tab changed the other tabs' top bar, and nothing else: their pages
    went on showing the old guest's session with its controls, over a connection that was still
    the old guest's (a stream started as them from a tab that said it was the new person: audit
    "manytabs"). The other tabs are loaded again as who the browser is now."""
    phone_tab = await new_tab(browser, iserver)
    laptop_tab = await new_tab(browser, iserver)
    try:
        phone = await guest_with_a_session(phone_tab, "Made on the phone")
        phone_user = str(await phone.locator("#identity").get_attribute("data-user-id"))
        laptop = await guest_with_a_session(laptop_tab, "Made on the laptop")
        laptop_session = laptop.url.rsplit("/", 1)[1]
        link = await device_link(phone, iserver)
        other = await laptop.context.new_page()  # the same browser: its storage and cookie
        await other.goto(iserver.url + link, wait_until="domcontentloaded")
        await other.locator("#login-continue").click()
        await expect(other.locator("#identity")).to_have_attribute("data-user-id", phone_user)

        # The laptop's first tab is the phone's person now, its page too: the old guest's session
        # is not theirs, and no connection of the old guest is left.
        await expect(laptop.locator("#identity")).to_have_attribute("data-user-id", phone_user)
        await expect(laptop.locator("#page-error")).to_have_attribute("data-code", "forbidden")
        assert laptop.url.endswith(laptop_session)
    finally:
        await phone_tab.page.context.close()
        await laptop_tab.page.context.close()
