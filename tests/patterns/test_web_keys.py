"""The pattern editor by keyboard alone."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
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


async def test_a_deleted_tracks_focus_goes_to_the_row_that_takes_its_place(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A track deleted under the keyboard's focus, by its own ✕ or by another player, took the
    focus to the page with its row."""
    tracks = [track(f"t{i}", name=f"Track {i}", steps=[False] * 16) for i in range(4)]
    session_id = await new_pattern(server, state={"tracks": tracks})
    page = await open_live(tab, f"/s/{session_id}")
    rows = page.locator(".track-row")
    other = Client(server.url, server.token("other-player"))
    clients.append(other)
    await other.connect()

    async def deleted_elsewhere(seq: int, track_id: str, left: int) -> None:
        op = {"type": "delete_track", "trackId": track_id}
        assert (await other.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op}))["ok"] is True
        await expect(rows).to_have_count(left)

    await page.get_by_role("button", name="Delete track Track 1").focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(3)
    await expect(page.get_by_role("button", name="Delete track Track 2")).to_be_focused()  # the next row's

    await step(page, "t3", 3).focus()
    await deleted_elsewhere(1, "t0", 2)  # not the focused row: the focus stays
    await expect(step(page, "t3", 3)).to_be_focused()
    await deleted_elsewhere(2, "t3", 1)  # the last row: the previous row's same step
    await expect(step(page, "t2", 3)).to_be_focused()

    await page.get_by_role("button", name="Delete track Track 2").focus()
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#add-track")).to_be_focused()  # no row is left
