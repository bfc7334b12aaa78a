"""A track's controls on a phone: in view without scrolling its row across.

Before, at 390x844 each track was one line of ~1,260 px (a touch screen's 44 px steps) in the
grid's sideways scroll: 7 of its 16 steps showed, and Mute, Solo, volume, step count, Clear and
delete sat past the 16th step with nothing saying so."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser import ACTION_TIMEOUT_MS, Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import new_pattern, open_live
from tests.web_pages import DESKTOP, PHONE

CONTROLS = (".track-name", ".mute", ".solo", ".volume", ".step-count", ".clear-track", ".delete-track")

# Where each of the first track's controls is, and whether a tap at its centre reaches it there
# (not clipped by the grid's box, not under anything).
PLACES = """(selectors) => {
  const row = document.querySelector("#grid .track-row");
  return {
    view: innerWidth,
    page: scrollX,
    grid: document.getElementById("grid").scrollLeft,
    controls: selectors.map((selector) => {
      const control = row.querySelector(selector);
      const box = control.getBoundingClientRect();
      const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
      return {selector, left: box.left, right: box.right, top: box.top, bottom: box.bottom,
        free: control === hit || control.contains(hit)};
    }),
  };
}"""


def out_of_view(places: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in places["controls"] if c["left"] < 0 or c["right"] > places["view"] or not c["free"]]


async def controls_in_view(page: Page) -> None:
    await expect(page.locator("#grid .track-row .step")).to_have_count(16)
    places = await page.evaluate(PLACES, list(CONTROLS))
    assert places["page"] == 0 and places["grid"] == 0, places
    assert not out_of_view(places), places
    # Scrolled across to the last step, the track's controls stay in view (the steps move).
    await page.locator("#grid .track-row .step").nth(15).scroll_into_view_if_needed()
    places = await page.evaluate(PLACES, list(CONTROLS))
    assert places["page"] == 0 and places["grid"] > 0, places
    assert not out_of_view(places), places
    await page.locator("#grid .track-row .mute").click()
    await expect(page.locator("#grid .track-row .mute")).to_have_attribute("aria-pressed", "true")


async def test_a_tracks_controls_are_in_view_at_390_px(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    await tab.page.set_viewport_size(PHONE)
    page = await open_live(tab, f"/s/{session_id}")
    await controls_in_view(page)


async def test_a_tracks_controls_are_in_view_on_a_touch_phone(server: ServerUnderTest, full_browser: Browser) -> None:
    """The audit's case: a touch screen's steps are 44 px, the row ~1,260 px."""
    session_id = await new_pattern(server)
    context = await full_browser.new_context(viewport=PHONE, device_scale_factor=3, is_mobile=True, has_touch=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    phone = Tab(page=await context.new_page(), base_url=server.url)
    try:
        page = await open_live(phone, f"/s/{session_id}")
        assert await page.evaluate("() => matchMedia('(pointer: coarse)').matches")
        await controls_in_view(page)
    finally:
        await context.close()
    assert not phone.errors, phone.errors


async def test_a_desktop_keeps_each_track_on_one_line(server: ServerUnderTest, tab: Tab) -> None:
    """The name and its controls, the steps, then Clear and delete: one line, as before."""
    session_id = await new_pattern(server)
    await tab.page.set_viewport_size(DESKTOP)
    page = await open_live(tab, f"/s/{session_id}")
    await expect(page.locator("#grid .track-row .step")).to_have_count(16)
    places = await page.evaluate(PLACES, [*CONTROLS, ".steps"])
    boxes = {c["selector"]: c for c in places["controls"]}
    middles = {round((c["top"] + c["bottom"]) / 2) for c in places["controls"]}
    assert max(middles) - min(middles) <= 1, boxes  # one line
    order = [".track-name", ".mute", ".solo", ".volume", ".step-count", ".steps", ".clear-track", ".delete-track"]
    lefts = [boxes[selector]["left"] for selector in order]
    assert lefts == sorted(lefts), boxes
    assert not out_of_view(places), places
