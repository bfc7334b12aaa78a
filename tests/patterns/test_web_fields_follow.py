"""A field the person is not editing shows the session's value, as two players set it together.

Before: the laptop entered tempo 100, the phone 150 half a second later; 150 played, and the
laptop's field went on showing 100, after its focus had left too (a focused field was never drawn
again, and leaving it drew it only after a refused value). The swing slider the same: at 30 while
its label said 70 %."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import api, new_pattern, open_live


@asynccontextmanager
async def two_players(server: ServerUnderTest, tab: Tab, browser: Browser) -> AsyncIterator[tuple[str, Page, Page]]:
    """A new pattern open live in ``tab`` (the laptop) and in a second browser (the phone)."""
    session_id = await new_pattern(server)
    other = await new_tab(browser, server)
    try:
        laptop = await open_live(tab, f"/s/{session_id}")
        phone = await open_live(other, f"/s/{session_id}")
        yield session_id, laptop, phone
        assert not other.errors, other.errors
    finally:
        await other.page.context.close()


async def test_tempo_and_swing_entered_show_the_later_players_value(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    async with two_players(server, tab, browser) as (session_id, laptop, phone):
        tempo, phone_tempo = laptop.locator("#tempo"), phone.locator("#tempo")

        await tempo.fill("100")
        await tempo.press("Enter")
        await expect(phone_tempo).to_have_value("100")
        await phone_tempo.fill("150")
        await phone_tempo.press("Enter")
        # Entered, the laptop's field is no longer being edited: focused, it shows what plays.
        await expect(tempo).to_be_focused()
        await expect(tempo).to_have_value("150")
        await laptop.locator("#play").focus()
        await expect(tempo).to_have_value("150")

        swing, phone_swing = laptop.locator("#swing"), phone.locator("#swing")
        await swing.fill("30")  # a slider let go: input, then change
        await expect(phone_swing).to_have_value("30")
        await phone_swing.fill("70")
        await expect(laptop.locator("#swing-value")).to_have_text("70%")
        await expect(swing).to_have_value("70")
        stored = await api(server, "GET", f"/api/sessions/{session_id}")
        assert (stored["state"]["tempo"], stored["state"]["swing"]) == (150, 70), stored["state"]


async def test_a_tempo_being_typed_is_not_overwritten_and_is_sent_as_the_focus_leaves(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    async with two_players(server, tab, browser) as (_, laptop, phone):
        tempo = laptop.locator("#tempo")
        await tempo.fill("110")  # typed, not entered

        await phone.locator("#tempo").fill("140")
        await phone.locator("#tempo").press("Enter")
        await phone.locator("#swing").fill("55")
        # The swing came after the tempo in the log: the laptop has had the tempo too.
        await expect(laptop.locator("#swing-value")).to_have_text("55%")
        await expect(tempo).to_have_value("110")

        await tempo.press("Tab")  # leaving the field enters what was typed
        await expect(phone.locator("#tempo")).to_have_value("110")
        await expect(tempo).to_have_value("110")
