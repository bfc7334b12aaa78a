"""In Chromium: the identity panel's devices are named for people, and signing another one out asks
first; Enter in the display-name field saves the name.

The devices list showed each device's raw User-Agent (five lines at 390 px) beside a button
labelled just "Sign out", placed before the panel's own Sign out: pressed by someone meaning to
sign out here, it signed another device out at once. The name field saved only with its button.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from playwright.async_api import Dialog, Page, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest

IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Mobile/15E148 Safari/604.1"
)


async def a_guest_with_a_phone(tab: Tab, server: ServerUnderTest) -> tuple[Page, str]:
    """The tab's guest, and a second device of theirs: an iPhone that opened a device link."""
    page = await tab.open("/streams")
    await page.evaluate("async () => (await import('/static/js/client.js')).api('/api/me/sessions')")
    identity = page.locator("#identity")
    await expect(identity).to_have_attribute("data-state", "known")
    user_id = str(await identity.get_attribute("data-user-id"))
    link = await page.evaluate(
        "async () => (await import('/static/js/client.js')).api('/api/auth/link', {method: 'POST'})"
    )
    token = parse_qs(urlsplit(link["url"]).query)["token"][0]
    headers = {"User-Agent": IPHONE_UA, "Origin": server.url}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/auth/one_time", json={"token": token}, headers=headers) as answer:
            assert answer.status == 200, await answer.text()
    assert len(await server.services.identities.devices(user_id)) == 2
    await page.reload()  # the panel lists the devices the page's load found
    await expect(identity).to_have_attribute("data-state", "known")
    return page, user_id


class Questions:
    """The page's confirm() questions, each answered as ``accept`` says at the time."""

    def __init__(self, page: Page) -> None:
        self.asked: list[str] = []
        self.accept = False
        page.on("dialog", self._answer)

    async def until(self, count: int) -> None:
        """Wait (bounded) until ``count`` questions were asked."""
        for _ in range(200):
            if len(self.asked) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"asked {self.asked}, not {count} questions")

    async def _answer(self, dialog: Dialog) -> None:
        self.asked.append(dialog.message)
        await (dialog.accept() if self.accept else dialog.dismiss())


@pytest.mark.parametrize("width", [390, 1280])
async def test_another_device_is_named_and_signed_out_only_once_confirmed(
    server: ServerUnderTest, tab: Tab, width: int
) -> None:
    await tab.page.set_viewport_size({"width": width, "height": 844})
    page, user_id = await a_guest_with_a_phone(tab, server)
    questions = Questions(page)
    await page.locator("#identity-name").click()
    await expect(page.locator("#identity-devices")).to_have_attribute("data-state", "current")
    rows = page.locator("#identity-devices li")
    await expect(rows).to_have_count(2)
    phone = page.locator("#identity-devices li", has_text="Safari on iPhone")
    here = page.locator("#identity-devices li", has_text="This device")
    await expect(here).to_contain_text("This device (Chrome on Linux)")
    # A short name, the whole User-Agent kept in its title, not spread over the panel.
    for row in (phone, here):
        await expect(row).not_to_contain_text("Mozilla")
    await expect(phone.locator(".device-name")).to_have_attribute("title", IPHONE_UA[:120])  # as the server keeps it
    lines = await phone.locator(".device-name").evaluate("(name) => name.getClientRects().length")
    assert lines == 1, lines  # one line, where the User-Agent ran over five at 390 px

    # The button says which device it signs out (its visible text and its name), and is not a
    # second "Sign out": that one is the panel's own, for this device.
    revoke = phone.get_by_role("button", name=re.compile(r"^Sign out Safari on iPhone, last used "))
    await expect(revoke).to_have_text("Sign out Safari on iPhone")
    await expect(page.get_by_role("button", name="Sign out", exact=True)).to_have_count(1)

    # From the keyboard, as the audit did; the question is answered "Cancel": nothing happens.
    await revoke.focus()
    await page.keyboard.press("Enter")
    await questions.until(1)
    assert "Sign out Safari on iPhone" in questions.asked[0], questions.asked
    await expect(rows).to_have_count(2)
    await expect(revoke).to_be_focused()
    assert len(await server.services.identities.devices(user_id)) == 2

    questions.accept = True  # asked again and confirmed: that device, and only it, is signed out
    await page.keyboard.press("Enter")
    await questions.until(2)
    for _ in range(200):
        devices = await server.services.identities.devices(user_id)
        if len(devices) == 1:
            break
        await asyncio.sleep(0.05)
    assert len(devices) == 1 and devices[0].label != IPHONE_UA[:120], devices
    await expect(page.locator("#identity-name")).to_be_focused()  # the panel it was in is closed
    await page.reload()
    await page.locator("#identity-name").click()
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("This device")


async def test_the_devices_read_again_keep_the_rows_and_the_focus_in_them(server: ServerUnderTest, tab: Tab) -> None:
    """The panel reads the devices again as it opens; rows that read the same stay as they are.

    The whole list was replaced when that answer came: a device's button the person had just
    reached lost the keyboard's focus, and an element found a moment before was gone (a CI run).
    """
    page, _ = await a_guest_with_a_phone(tab, server)
    # Opened and the phone's button reached at once, before the panel's own read is answered.
    await page.evaluate(
        """() => {
            document.getElementById("identity-name").click();
            window.heldName = document.querySelector("#identity-devices .device-name");
            document.querySelector("#identity-devices button").focus();
            window.heldButton = document.activeElement;
        }"""
    )
    await expect(page.locator("#identity-devices")).to_have_attribute("data-state", "current")
    assert await page.evaluate("() => window.heldName.isConnected && window.heldButton.isConnected")
    assert await page.evaluate("() => document.activeElement === window.heldButton")
    await expect(page.locator("#identity-devices li")).to_have_count(2)


async def test_enter_in_the_name_field_saves_the_name(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    name = page.locator("#identity-name")
    await name.click()
    field = page.locator("#identity-name-input")
    error = page.locator("#identity-error")

    await page.context.set_offline(True)  # a failure is said as with the button, and kept
    await field.fill("Ada Lovelace")
    await field.press("Enter")
    await expect(error).to_have_text("The name was not saved: The server cannot be reached.")
    await expect(field).to_be_focused()
    await expect(field).to_have_value("Ada Lovelace")

    await page.context.set_offline(False)
    await field.press("Enter")
    await expect(name).to_have_text("Ada Lovelace")
    await expect(name).to_be_focused()  # the panel it was in is gone
    assert (await server.services.identities.profile("alice")).name == "Ada Lovelace"
