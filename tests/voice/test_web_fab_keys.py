"""In Chromium, with the keyboard only: the FAB keeps the focus on itself through its actions.

While an action runs the FAB's buttons are disabled, and a focused button that is disabled loses
the focus to the page: a keyboard user who pressed Rec (or New, Pause, Done) found the focus back
at the top of the page, the Pause they wanted next a whole page of Tabs away."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser import Tab, listen_to_live_regions, live_texts
from tests.helpers import ServerUnderTest
from tests.voice.test_web_session_follow import until_audio_is_kept


async def press(page: Page, key: str, status: str, focused: str) -> None:
    await page.keyboard.press(key)
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", status)
    await expect(page.locator(focused)).to_be_focused()


async def test_the_fab_keeps_the_focus_through_new_pause_resume_and_done(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").focus()
    await press(page, "Enter", "recording", "#fab-pause")  # New: what comes next is Pause
    await until_audio_is_kept(page)
    await press(page, "Space", "paused", "#fab-rec")  # Pause: then Resume
    await expect(page.locator("#fab-rec")).to_have_text("Resume")
    await press(page, "Enter", "recording", "#fab-pause")  # Resume: Pause again
    await page.locator("#fab-done").focus()
    await press(page, "Enter", "closed", "#fab-new")  # Done: a new session is what is left


async def test_the_recorders_state_is_said_once_per_change(server: ServerUnderTest, tab: Tab) -> None:
    """The state lived in a pictogram's label and a plain word: a screen reader heard nothing of
    Rec, Pause or another device's recording. Said once per change, a cut being none."""
    await tab.use_token(server.token("alice"))
    await listen_to_live_regions(tab.page)
    page = await tab.open("/")
    said = page.locator("#fab-announce")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await expect(said).to_have_attribute("role", "status")  # in place before anything is said
    await expect(said).to_have_text("")  # what the page shows as it loads is not said
    await page.locator("#fab-new").focus()
    await press(page, "Enter", "recording", "#fab-pause")
    await expect(said).to_have_text("Recorder: Recording")
    await until_audio_is_kept(page)
    await page.locator("#fab-cut").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "cutting")
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await page.locator("#fab-pause").focus()
    await press(page, "Space", "paused", "#fab-rec")
    await expect(said).to_have_text("Recorder: Paused")

    other = await page.context.new_page()  # another tab, as another device
    await other.goto(server.url + "/", wait_until="domcontentloaded")
    await expect(other.locator("#fab-rec")).to_be_enabled()
    await other.locator("#fab-rec").click()
    await expect(said).to_have_text("Recorder: Recording elsewhere")
    await other.locator("#fab-pause").click()
    await expect(said).to_have_text("Recorder: Paused")
    assert await live_texts(page, "fab-announce") == [
        "Recorder: Recording",
        "Recorder: Paused",
        "Recorder: Recording elsewhere",
        "Recorder: Paused",
    ]
