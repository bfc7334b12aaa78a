"""In Chromium: the voice session page of a bookmark opened on a new browser, and of a session
the guest sweep deleted (audit "returning" F2, F4).

A voice session open while the guest sweep deleted it said "This session was deleted on the
server", as an operator's deletion: the person read someone else's doing where their guest had
been forgotten. A bookmarked session opened on a new browser made a guest and said only "This
session belongs to another user", without the owner's way back."""

from __future__ import annotations


from playwright.async_api import expect

from tests.browser import Tab
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
