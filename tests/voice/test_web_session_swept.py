"""In Chromium: the voice session page of a bookmark opened on a new browser, and of a session
the guest sweep deleted (audit "returning" F2, F4).

A voice session open while the guest sweep deleted it said "This session was deleted on the
server", as an operator's deletion: the person read someone else's doing where their guest had
been forgotten. A bookmarked session opened on a new browser made a guest and said only "This
session belongs to another user", without the owner's way back."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.listening.test_web_history_deleted import guest_page, swept
from tests.listening.test_web_history_deleted import server as server
from tests.streams.helpers import http


async def test_a_session_open_as_the_guest_sweep_deletes_it_says_the_guest_was_forgotten(
    server: ServerUnderTest, tab: Tab
) -> None:
    page, user_id, token = await guest_page(tab, "/history")  # it makes a guest
    status, body = await http(server, "POST", "/voicebot/create_session", token=token, json={"session_name": "notes"})
    assert status == 201, body
    await page.goto(f"{server.url}/session/{body['session_id']}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await swept(server, user_id)
    await expect(page.locator("#page-error-title")).to_have_text("Session deleted")
    message = page.locator("#page-error-message")
    await expect(message).to_contain_text("the guest was forgotten")
    await expect(message).to_contain_text("with its recordings")
    await expect(message).not_to_contain_text("on the server")
    await expect(page.locator("#session")).to_be_hidden()


async def test_a_bookmarked_session_on_a_new_browser_says_how_its_owner_signs_in(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id = await server.create_session("alice")
    page, _, _ = await guest_page(tab, f"/session/{session_id}")
    await expect(page.locator("#page-error-title")).to_have_text("No access to this session")
    message = page.locator("#page-error-message")
    await expect(message).to_contain_text(
        "If it is yours, sign in here with a device link made on a device where you are signed in"
    )
    await expect(message).to_contain_text("or with a passkey")
    # The way to the passkey sign-in it names, the top bar's name, is a button the keyboard reaches.
    await expect(page.locator("#identity-name")).to_be_visible()
    await page.locator("#identity-name").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#identity-panel")).to_be_visible()


async def test_a_bookmark_opened_after_the_sweep_says_the_session_went_with_its_guest(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    """After the sweep, an old bookmark of the guest's voice session or stream said "There is no
    session with this link. It may have been mistyped." (audit "daysdevices"): only a page open
    during the sweep heard why. The deleter keeps why a while (handlers/session_gone.py)."""
    page, user_id, token = await guest_page(tab, "/history")
    status, voice = await http(server, "POST", "/voicebot/create_session", token=token, json={"session_name": "notes"})
    assert status == 201, voice
    status, stream = await http(server, "POST", "/api/streams", token=token, json={"title": "Friday"})
    assert status == 201, stream
    await swept(server, user_id)

    later = await new_tab(browser, server)  # the person back, a month on: a new guest
    try:
        page = await later.open(f"/session/{voice['session_id']}")
        await expect(page.locator("#page-error-title")).to_have_text("Session deleted")
        await expect(page.locator("#page-error-message")).to_contain_text("the guest was forgotten")
        await expect(page.locator("#page-error-message")).not_to_contain_text("mistyped")
        page = await later.open(f"/streams/{stream['session']['session_id']}")
        await expect(page.locator("body")).to_contain_text("the guest was forgotten")
        await expect(page.locator("body")).not_to_contain_text("Stream not found")
    finally:
        await later.page.context.close()
    status, body = await http(server, "GET", f"/voicebot/sessions/{voice['session_id']}", token=server.token("bob"))
    assert (status, body.get("error"), body.get("reason")) == (404, "session_not_found", "deleted_with_guest"), body
