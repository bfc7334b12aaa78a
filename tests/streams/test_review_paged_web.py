"""The dashboard of a big stream pages its review: on a 390 px phone and by keyboard alone.

Before, the dashboard loaded and drew every clip of the stream (``GET …/clips``) at once; now
the first load is a summary and the first page of each segment, and "Show N more clips" (a
button with its segment in its name) brings the next page, the focus on its first clip. Live
clips are listed in their place when it is paged in, and brought by a later page when not;
clips deleted meanwhile never show; the counts stay exact.
"""

from __future__ import annotations

import asyncio

from playwright.async_api import Locator, Page, Route, expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, http, started, store_clips, stored_clip

STORED = 250


# Marks the keyboard-focusable element beside ``target`` (the next, else the previous) in the
# page's order: the test then moves the focus onto ``target`` with the keyboard from there.
_MARK_NEIGHBOUR = """(target) => {
  const focusable = [...document.querySelectorAll("a[href], button, input, select, textarea, [tabindex]")]
    .filter((el) => el.tabIndex >= 0 && !el.disabled && el.getClientRects().length > 0);
  const at = focusable.indexOf(target);
  const next = focusable[at + 1];
  const neighbour = next ?? focusable[at - 1];
  neighbour.setAttribute("data-test-neighbour", next ? "next" : "previous");
  return neighbour.getAttribute("data-test-neighbour");
}"""


async def focus_by_shift_tab(page: Page, target: Locator) -> None:
    """Reach ``target`` by the keyboard from the control beside it: a reviewer's way to it."""
    side = await target.evaluate(_MARK_NEIGHBOUR)
    neighbour = page.locator("[data-test-neighbour]")
    await neighbour.focus()
    await page.keyboard.press("Shift+Tab" if side == "next" else "Tab")
    await expect(target).to_be_focused()
    await neighbour.evaluate("el => el.removeAttribute('data-test-neighbour')")


async def test_a_big_streams_review_pages_by_keyboard_on_a_phone(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    stored = [
        stored_clip(n, segment_index=1, offset_ms=1_000 + n * 10, note=f"stored {n}", clipped=False)
        for n in range(STORED)
    ]
    await store_clips(server, session_id, stored)
    # The record's counters as the clicks' steps would have left them.
    record = server.services.keys.session(session_id)
    await server.services.store.redis.hset(record, mapping={"clip_seq": STORED, "clip_count": STORED})  # type: ignore[misc]
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#segments")).to_have_attribute("data-review", "settled")

    segment = page.locator('.segment[data-index="1"]')
    rows = segment.locator(".review-clip")
    more = segment.locator(".load-more")
    shown = segment.locator(".clips-shown")
    await expect(rows).to_have_count(100)
    await expect(segment.locator(".clips-title")).to_have_text(f"Clips ({STORED})")
    await expect(shown).to_have_text(f"Showing 100 of {STORED} clips")
    await expect(shown).to_have_attribute("role", "status")
    await expect(more).to_have_text("Show 100 more clips")
    await expect(more).to_have_accessible_name("Show 100 more clips, segment 1")
    await expect(rows.first.locator(".note")).to_have_text("stored 0")

    # A clip deleted before its page is read never shows; the count says one fewer.
    gone = stored[150]["clip_id"]
    status, _ = await http(server, "DELETE", f"/api/streams/{session_id}/clips/{gone}")
    assert status == 200
    await expect(segment.locator(".clips-title")).to_have_text(f"Clips ({STORED - 1})")
    # A live clip at the segment's start (its place is paged in): listed at once, first.
    early = await connect(server, clients, "early-viewer")
    late = await connect(server, clients, "late-viewer")
    cleared = await connect(server, clients, "cleared-viewer")
    server.services.clock.shift_ms = -3_600_000  # the click lands at 0:00:00 of the segment
    assert (await early.call("clip_submit", {"session_id": session_id, "note": "early live"}))["ok"]
    await expect(rows.first.locator(".note")).to_have_text("early live")
    await expect(rows).to_have_count(101)
    # A live clip past what is paged in: counted, in the feed, and listed by the last page.
    server.services.clock.shift_ms = 60_000  # a minute on: after every stored clip
    assert (await late.call("clip_submit", {"session_id": session_id, "note": "late live"}))["ok"]
    await expect(page.locator("#feed .feed-item").first.locator(".note")).to_have_text("late live")
    await expect(segment.locator(".clips-title")).to_have_text(f"Clips ({STORED + 1})")
    await expect(page.locator("#clip-count")).to_have_text(str(STORED + 1))
    await expect(rows).to_have_count(101)
    # A viewer's clips cleared where nothing is paged in yet: the event names no segment, and
    # the count is read again.
    assert (await cleared.call("clip_submit", {"session_id": session_id, "note": "cleared live"}))["ok"]
    await expect(segment.locator(".clips-title")).to_have_text(f"Clips ({STORED + 2})")
    status, body = await http(server, "DELETE", f"/api/streams/{session_id}/clips", params={"by": "cleared-viewer"})
    assert (status, body["removed"]) == (200, 1), body
    await expect(segment.locator(".clips-title")).to_have_text(f"Clips ({STORED + 1})")
    await expect(page.locator("#clip-count")).to_have_text(str(STORED + 1))

    # By keyboard: the button is the segment's last control (Shift+Tab from the next segment's
    # first reaches it), Enter; the focus goes to the first clip of the new page.
    await focus_by_shift_tab(page, more)
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(201)
    await expect(rows.nth(101)).to_be_focused()
    await expect(rows.nth(101).locator(".note")).to_have_text("stored 100")
    await expect(shown).to_have_text(f"Showing 201 of {STORED + 1} clips")
    await expect(more).to_have_text(f"Show {STORED + 1 - 201} more clips")

    # The last page: every clip once, the deleted one not, the late live one last; no button.
    width = await more.evaluate("b => b.getBoundingClientRect().width")
    assert width >= 300, width  # the line's width on a phone
    await focus_by_shift_tab(page, more)
    await page.keyboard.press("Enter")
    await expect(rows).to_have_count(STORED + 1)
    await expect(more).to_be_hidden()
    await expect(shown).to_be_hidden()
    notes = await rows.locator(".note").all_text_contents()
    assert len(set(await rows.evaluate_all("rows => rows.map((r) => r.dataset.key)"))) == STORED + 1
    assert notes[0] == "early live" and notes[-1] == "late live"
    assert "stored 150" not in notes and notes[1:-1] == [f"stored {n}" for n in range(STORED) if n != 150]
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 390
    assert not tab.errors, tab.errors


async def test_a_segment_past_the_first_five_shows_its_clips_on_request(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, owner = await started(server, clients)
    for action in ("pause", "resume") * 5:  # segments 1..6
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": action}))["ok"]
    clips = [
        stored_clip(n, segment_index=1 + n % 6, offset_ms=n, note=f"s{1 + n % 6} n{n}", clipped=False)
        for n in range(18)
    ]
    await store_clips(server, session_id, clips)
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#segments")).to_have_attribute("data-review", "settled")
    for index in range(1, 6):  # the first five: their first page at once, nothing more to ask for
        listed = page.locator(f'.segment[data-index="{index}"]')
        await expect(listed.locator(".review-clip")).to_have_count(3)
        await expect(listed.locator(".load-more")).to_be_hidden()
    sixth = page.locator('.segment[data-index="6"]')
    more = sixth.locator(".load-more")
    await expect(sixth.locator(".review-clip")).to_have_count(0)
    await expect(sixth.locator(".clips-title")).to_have_text("Clips (3)")
    await expect(sixth.locator(".clips-shown")).to_have_text("Showing 0 of 3 clips")
    await expect(more).to_have_accessible_name("Show clips, segment 6")
    assert await more.evaluate("b => b.getBoundingClientRect().width") >= 300
    await focus_by_shift_tab(page, more)
    await page.keyboard.press("Enter")
    await expect(sixth.locator(".review-clip .note")).to_have_text(["s6 n5", "s6 n11", "s6 n17"])
    await expect(sixth.locator(".review-clip").first).to_be_focused()
    await expect(more).to_be_hidden()
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 390
    assert not tab.errors, tab.errors


async def test_slow_moments_do_not_hold_the_reviews_first_drawing(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    await store_clips(
        server,
        session_id,
        [stored_clip(n, segment_index=1, offset_ms=n, note=f"n{n}", clipped=False) for n in range(5)],
    )
    # Grouping a 200,000-clip stream takes seconds: the moments' answers are held here until let go.
    let_go = asyncio.Event()

    async def held(route: Route) -> None:
        await let_go.wait()
        await route.continue_()

    await tab.page.route("**/moments?*", held)
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator(".review-clip")).to_have_count(5)  # drawn a second on, without them
    await expect(page.locator(".moment")).to_have_count(0)
    let_go.set()
    await expect(page.locator(".moment .count")).to_have_text(["5 clicks"])
    await expect(page.locator("#segments")).to_have_attribute("data-moments", "settled")
    assert not tab.errors, tab.errors
