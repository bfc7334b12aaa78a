"""In Chromium: what low-vision and zoomed-in readers found unreadable or unreachable, and a
recorder that told a screen-reader user their own Done came from elsewhere (an accessibility
audit: axe-core, a 320 px viewport, the live regions' words)."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.streams.helpers import create_stream, http
from tests.voice.test_web_fab_closed_elsewhere import recording_on_a_new_session

pytestmark = pytest.mark.timeout(180)

# WCAG's contrast ratio of an element's text colour on its own background (both opaque here).
CONTRAST = """(el) => {
  const rgb = (text) => text.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const style = getComputedStyle(el);
  const [a, b] = [lum(rgb(style.color)), lum(rgb(style.backgroundColor))].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""


async def test_the_paused_badge_is_readable(server: ServerUnderTest, tab: Tab) -> None:
    """White on amber: 2.1:1, under the 4.5:1 small text needs; the one word that says why the
    Clip Moment button stopped working."""
    session_id = await create_stream(server, title="Raid")
    for action in ("start", "pause"):
        status, body = await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": action})
        assert status == 200, body
    await tab.use_token(server.token("bob"))
    page = await tab.open(f"/watch/{session_id}")
    badge = page.locator("#stream-state")
    await expect(badge).to_have_text("Paused")
    assert await badge.evaluate(CONTRAST) >= 4.5


async def fully_on_screen(page: Page, selector: str) -> bool:
    return bool(
        await page.locator(selector).evaluate(
            """(el) => { const r = el.getBoundingClientRect();
              return r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight; }"""
        )
    )


async def test_the_recorders_buttons_are_all_on_a_320_px_screen(server: ServerUnderTest, tab: Tab) -> None:
    """A laptop at 400% zoom is 320 CSS px wide: the recorder is fixed to the screen, and its
    Done was half off it ("Do"), with nothing to scroll it into view."""
    await tab.page.set_viewport_size({"width": 320, "height": 568})
    await tab.use_token(server.token("alice"))
    page = await tab.open("/")
    await recording_on_a_new_session(page, server)
    for name in ("rec", "cut", "pause", "done", "new"):
        button = f"#fab-{name}"
        if await page.locator(button).is_visible():
            assert await fully_on_screen(page, button), name
    await page.locator("#fab-done").click()  # reachable, and it does its work
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "closed")


async def test_the_recorder_says_this_pages_done_closed_the_session_here(server: ServerUnderTest, tab: Tab) -> None:
    """Record, pause, then the session page's own Done: the recorder's live region said "This
    session was closed elsewhere", which a screen-reader user can only take to mean somebody
    else closed it."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/session")
    session_id = await recording_on_a_new_session(page, server)
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "paused")
    await page.locator("#done-button").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "closed")
    message = page.locator("#fab-message")
    await expect(message).to_contain_text("closed with Done on this page")
    await expect(message).not_to_contain_text("elsewhere")
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == "closed"
