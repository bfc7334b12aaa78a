"""In Chromium: the stream dashboard of a bookmark opened on a new browser, and of a stream the
guest sweep deleted (audit "returning" F2, F4).

A new browser (a new laptop, a phone whose site data was cleared) opening the streamer's
bookmarked dashboard made a guest and then said only "This is not your stream": nothing told the
streamer how to be themselves here. A dashboard open while the guest sweep deleted its stream
said "deleted", as an operator's deletion, where the guest had been forgotten."""

from __future__ import annotations


from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.identity.test_passkeys import pserver as pserver
from tests.helpers import ServerUnderTest
from tests.listening.test_web_history_deleted import guest_page, swept
from tests.listening.test_web_history_deleted import server as server
from tests.streams.helpers import create_stream

TABS_AT_MOST = 40


async def tab_to(page: Page, selector: str) -> None:
    """Press Tab from the page's start until ``selector`` has the focus (it must get it)."""
    await page.evaluate("document.activeElement?.blur()")
    target = page.locator(selector)
    for _ in range(TABS_AT_MOST):
        await page.keyboard.press("Tab")
        if await target.evaluate("(node) => node === document.activeElement"):
            return
    raise AssertionError(f"{selector} is not reached by Tab")


async def test_a_bookmarked_dashboard_on_a_new_browser_says_how_its_streamer_signs_in(
    server: ServerUnderTest, tab: Tab
) -> None:
    stream_id = await create_stream(server, user="alice")
    page, _, _ = await guest_page(tab, f"/streams/{stream_id}")
    await expect(page.locator("#page-error-title")).to_have_text("This is not your stream")
    await expect(page.locator("#page-error-message")).to_contain_text(
        "If it is yours, sign in here with a device link made on a device where you are signed in, or with a passkey."
    )
    await expect(page.locator("#page-error-signin")).to_contain_text("Link another device")
    # A server without passkeys offers none.
    await expect(page.locator("#page-error-passkey")).to_be_hidden()
    await expect(page.locator("#page-error-link")).to_have_attribute("href", f"/watch/{stream_id}")


async def test_the_passkey_way_back_is_a_button_the_keyboard_reaches(
    pserver: ServerUnderTest, browser: Browser
) -> None:
    """On a server that offers passkeys (a public URL of http://localhost:<port>)."""
    tab = await new_tab(browser, pserver)
    try:
        await tab.page.set_viewport_size({"width": 390, "height": 844})
        stream_id = await create_stream(pserver, user="alice")
        page, _, _ = await guest_page(tab, f"/streams/{stream_id}")
        passkey = page.locator("#page-error-passkey")
        await expect(passkey).to_be_visible()
        await expect(passkey).to_have_text("Sign in with a passkey")
        await tab_to(page, "#page-error-passkey")
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, wide
    finally:
        await tab.page.context.close()


async def test_a_dashboard_open_as_the_guest_sweep_deletes_its_stream_says_the_guest_was_forgotten(
    server: ServerUnderTest, tab: Tab
) -> None:
    page, user_id, token = await guest_page(tab, "/history")  # it makes a guest; /streams does not
    stream_id = await create_stream_as(server, token)
    await page.goto(f"{server.url}/streams/{stream_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await swept(server, user_id)
    await expect(page.locator("#page-error-title")).to_have_text("Stream deleted")
    message = page.locator("#page-error-message")
    await expect(message).to_contain_text("the guest was forgotten")
    await expect(message).to_contain_text("within 60 minutes")
    await expect(message).to_contain_text("with its clips")
    await expect(page.locator("#dashboard")).to_be_hidden()


async def create_stream_as(server: ServerUnderTest, token: str) -> str:
    from tests.streams.helpers import http

    status, body = await http(server, "POST", "/api/streams", token=token, json={"title": "Raid night"})
    assert status == 201, body
    return str(body["session"]["session_id"])
