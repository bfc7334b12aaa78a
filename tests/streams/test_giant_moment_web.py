"""One giant moment (a raid's thousands of clicks in one window) on the dashboard: a few of its
notes and a keyboard-reachable "Show all N notes", at 390 px, its count right and live clips
still added to it. Before, its thousands of notes were one row: an unreadable wall on a phone
that took 18-95 ms to draw at every regrouping."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started, store_clips, stored_clip

CLICKS = 3_000
SHOWN = 5


async def test_a_giant_moment_shows_a_few_notes_and_all_of_them_on_request(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    # 3,000 clicks in the first 3 s of the segment: one moment.
    await store_clips(
        server,
        session_id,
        [
            stored_clip(seq, segment_index=1, offset_ms=seq, note=f"note {seq}", clipped=False)
            for seq in range(1, CLICKS + 1)
        ],
    )
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    # A window of 10 minutes: the live click below joins the moment however slow the machine.
    await page.locator("#window-input").fill("600")
    await page.locator("#window-input").dispatch_event("change")
    await expect(page.locator("#segments")).to_have_attribute("data-moments", "settled", timeout=20_000)

    moment = page.locator(".moment").first
    notes = moment.locator(".note bdi")
    toggle = moment.locator(".notes-toggle")
    await expect(page.locator(".moment")).to_have_count(1)
    await expect(moment.locator(".count")).to_have_text(f"{CLICKS} clicks")
    await expect(notes).to_have_count(SHOWN)
    await expect(notes.first).to_have_text("note 1")
    await expect(toggle).to_have_text("Show all 3,000 notes")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 390

    # Reached by Tab from the moment window's field, opened with Enter: the focus stays on it.
    await page.locator("#window-input").focus()
    for _ in range(40):
        if await toggle.evaluate("t => t === document.activeElement"):
            break
        await page.keyboard.press("Tab")
    await expect(toggle).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(notes).to_have_count(CLICKS)
    await expect(toggle).to_have_text("Show fewer notes")
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(toggle).to_be_focused()

    # A live click joins the open moment: counted, its note last, the moment still open, the
    # keyboard user still on the toggle.
    server.services.clock.shift_ms += 60_000  # a minute later: after every stored click
    viewer = await connect(server, clients, "bob")
    assert (await viewer.call("clip_submit", {"session_id": session_id, "note": "late note"}))["ok"] is True
    await expect(moment.locator(".count")).to_have_text(f"{CLICKS + 1} clicks", timeout=20_000)
    await expect(notes).to_have_count(CLICKS + 1)
    await expect(notes.last).to_have_text("late note")
    await expect(toggle).to_have_text("Show fewer notes")
    await expect(toggle).to_be_focused()

    await page.keyboard.press("Enter")
    await expect(notes).to_have_count(SHOWN)
    await expect(toggle).to_have_text("Show all 3,001 notes")
    await expect(toggle).to_be_focused()
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 390
    assert not tab.errors, tab.errors
