"""The /streams form's refusals, tied to their field (audit "keyboard", finding 3)."""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest


async def refused_beside(page: Page, field: Locator, message_id: str, text: str) -> None:
    """``field`` is marked invalid, described by its message ``text``, and has the focus."""
    await expect(page.locator(f"#{message_id}")).to_have_text(text)
    await expect(page.locator(f"#{message_id}")).to_have_attribute("role", "status")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_have_attribute("aria-describedby", message_id)
    await expect(field).to_have_accessible_description(text)
    await expect(field).to_be_focused()
    await expect(page.locator("#create-error")).to_be_hidden()
    await expect(page.locator("body")).not_to_contain_text("String should have")


async def test_a_title_of_spaces_is_refused_beside_the_title_in_a_persons_words(
    tab: Tab, server: ServerUnderTest
) -> None:
    """Three spaces and Enter from the delay field: the alert said "Could not create the session:
    title: String should have at least 1 character", the title was not marked, and the focus
    stayed in the delay field."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    title = page.locator("#title-input")
    await title.fill("   ")
    delay = page.locator("#delay-input")
    await delay.focus()
    await page.keyboard.press("Enter")
    await refused_beside(page, title, "title-error", "Give the stream a title.")

    await page.keyboard.type("Friday raid")  # corrected: the mark and the message go
    await expect(title).not_to_have_attribute("aria-invalid", "true")
    await expect(title).not_to_have_attribute("aria-describedby", "title-error")
    await expect(page.locator("#title-error")).to_have_text("")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{server.url}/streams/*")


async def test_a_title_the_server_refuses_is_said_beside_the_title(tab: Tab, server: ServerUnderTest) -> None:
    """A title of an invisible character alone passes the page and is refused by the server
    (nothing in it shows): its words go beside the field, not the validator's into an alert."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    title = page.locator("#title-input")
    await title.fill("\u200b")
    await title.press("Enter")
    await refused_beside(
        page, title, "title-error", "Give the stream a title with a character that shows, not only invisible ones."
    )
    await expect(page).to_have_url(f"{server.url}/streams")


async def test_an_empty_title_and_a_delay_out_of_range_are_said_beside_their_fields(
    tab: Tab, server: ServerUnderTest
) -> None:
    """The browser's own checks (`required`, `min`/`max`/`step`) stopped the form first: a bubble
    gone in a moment, the field not marked, these words never shown (audit "verify51")."""
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    title, delay = page.locator("#title-input"), page.locator("#delay-input")
    await title.focus()
    await page.keyboard.press("Enter")  # nothing typed
    await refused_beside(page, title, "title-error", "Give the stream a title.")
    await title.fill("Friday raid")
    for wrong in ("700", "-5", "1.5"):
        await delay.fill(wrong)
        await delay.press("Enter")
        await refused_beside(page, delay, "delay-error", "The viewer delay is 0 to 600 whole seconds.")
    await expect(page).to_have_url(f"{server.url}/streams")  # nothing created
    await delay.fill("30")
    await delay.press("Enter")
    await page.wait_for_url(f"{server.url}/streams/*")
