"""The pattern editor by keyboard alone."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, step


async def test_a_tracks_steps_are_one_tab_stop_walked_by_the_arrow_keys(server: ServerUnderTest, tab: Tab) -> None:
    """Every step was a Tab stop: with three tracks of 16 steps, 69 Tabs from the swing to the
    'Add a track' field (16 tracks: 368), and a step's parameters under the grid as far away."""
    tracks = [track(f"t{i}", name=f"Track {i}", steps=[False] * 16) for i in range(3)]
    session_id = await new_pattern(server, state={"tracks": tracks})
    page = await open_live(tab, f"/s/{session_id}")
    await step(page, "t0", 0).focus()
    for key, focused in (
        ("ArrowRight", step(page, "t0", 1)),
        ("ArrowRight", step(page, "t0", 2)),
        ("Tab", page.get_by_role("button", name="Clear Track 0")),  # the row's next control
        ("Shift+Tab", step(page, "t0", 2)),  # back to the step last on
        ("End", step(page, "t0", 15)),
        ("Home", step(page, "t0", 0)),
        ("ArrowDown", step(page, "t1", 0)),
    ):
        await page.keyboard.press(key)
        await expect(focused).to_be_focused()

    await page.locator("#swing").focus()
    presses = 0
    while not await page.evaluate("document.activeElement.id === 'add-sample'"):
        await page.keyboard.press("Tab")
        presses += 1
        # A row's name, mute, solo, volume, step count, steps, clear and delete; the focused step's
        # pitch, volume, tie and reset; then the field.
        assert presses <= 3 * 8 + 4 + 1
