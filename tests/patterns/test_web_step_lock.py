"""A step's own parameters (its parameter lock: pitch, volume, tie) edited in the page, live."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, expect

from storage.patterns.repository import PatternSessions
from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, step


async def stored_lock(server: ServerUnderTest, session_id: str, index: int) -> Any:
    loaded = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert loaded is not None
    return loaded[0].state["tracks"][0]["parameterLocks"][index]


async def test_two_players_edit_a_steps_pitch_volume_and_tie_by_keyboard(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    """The editor had no way to set a step's pitch, volume or tie: only the API could."""
    steps = [i in (4, 5) for i in range(16)]
    session_id = await new_pattern(
        server, state={"tracks": [track("t1", name="Lead", sampleId="synth:lead", steps=steps)]}
    )
    page = await open_live(tab, f"/s/{session_id}")
    other_tab = await new_tab(browser, server)
    try:
        other = await open_live(other_tab, f"/s/{session_id}")
        await step(page, "t1", 5).focus()
        panel = page.locator("#step-lock")
        await expect(panel.locator("legend")).to_have_text("Lead · step 6")
        await page.locator("#lock-pitch").focus()
        await page.keyboard.press("ControlOrMeta+a")
        await page.keyboard.type("7")
        await page.keyboard.press("Enter")
        await page.locator("#lock-volume").focus()
        for _ in range(4):
            await page.keyboard.press("ArrowLeft")  # 1.00 -> 0.80, one change a key
        await page.locator("#lock-tie").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#lock-tie")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#lock-volume-value")).to_have_text("80%")

        # The other player sees the lock on the step and, on it, its values.
        await expect(step(other, "t1", 5)).to_have_class(re.compile(r"\blocked\b"))
        await step(other, "t1", 5).focus()
        await expect(other.locator("#lock-pitch")).to_have_value("7")
        await expect(other.locator("#lock-tie")).to_have_attribute("aria-pressed", "true")
        assert await stored_lock(server, session_id, 5) == {"pitch": 7, "volume": 0.8, "tie": True}

        await other.locator("#lock-reset").focus()
        await other.keyboard.press("Enter")
        await expect(step(page, "t1", 5)).not_to_have_class(re.compile(r"\blocked\b"))
        await expect(page.locator("#lock-pitch")).to_have_value("0")
        await expect(page.locator("#lock-tie")).to_have_attribute("aria-pressed", "false")
        assert await stored_lock(server, session_id, 5) is None
        assert not other_tab.errors, other_tab.errors
    finally:
        await other_tab.page.context.close()
