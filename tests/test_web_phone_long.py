"""In Chromium on a 390 px phone: text people typed as one long word (a pasted link, a string of
emoji, 100 W's) wraps inside its line. The lists of sessions and streams, the stream's game and
its clips' notes widened the page to 1,600 px and more: the whole page scrolled sideways."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser import Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, create_stream, http
from tests.web_pages import PHONE

LONG = "W" * 100

# Elements past the right edge that no box of their own scrolls or clips, and the page's width.
WIDE = """() => ({
  wide: [...document.querySelectorAll('body *')]
    .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > innerWidth + 0.5)
    .filter((e) => {
      for (let up = e.parentElement; up && up !== document.body; up = up.parentElement) {
        if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(up).overflowX)) return false;
      }
      return true;
    })
    .map((e) => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className),
  width: document.documentElement.scrollWidth,
})"""


async def test_long_words_people_typed_wrap_on_a_phone(
    server: ServerUnderTest, tab: Tab, browser: Browser, clients: list[Client]
) -> None:
    stream = await create_stream(server, title=LONG, game=LONG[:60])
    await http(server, "POST", f"/api/streams/{stream}/state", json={"action": "start"})
    viewer = await connect(server, clients, "bob")
    assert (await viewer.call("clip_submit", {"session_id": stream, "note": LONG}))["ok"] is True
    session = await server.create_session("alice", name=LONG)
    await tab.page.set_viewport_size(PHONE)
    await tab.use_token(server.token("alice"))
    for path, shown in (
        ("/", "#recent-list li"),
        ("/streams", "#stream-list li"),
        (f"/streams/{stream}", ".review-clip .note"),
        (f"/session/{session}", "#session-name"),
        ("/session", "#my-session-list li"),
    ):
        page = await tab.open(path)
        await expect(page.locator(shown).first).to_contain_text(LONG[:20])
        if path.startswith("/streams/"):
            await expect(page.locator(".moment .note")).to_contain_text(LONG[:20])
        assert await page.evaluate(WIDE) == {"wide": [], "width": PHONE["width"]}, path

    watching = await new_tab(browser, server)
    try:
        await watching.page.set_viewport_size(PHONE)
        await watching.use_token(server.token("bob"))
        page = await watching.open(f"/watch/{stream}")
        await expect(page.locator("#mine li").first).to_contain_text(LONG[:20])
        assert await page.evaluate(WIDE) == {"wide": [], "width": PHONE["width"]}, "watch"
    finally:
        await watching.page.context.close()


async def test_a_long_display_name_does_not_widen_every_page(iserver: ServerUnderTest, browser: Browser) -> None:
    """The top bar's name button took a 60-character name whole: every page was 1,112 px wide."""
    from tests.identity.test_web_link import guest_with_a_session

    tab = await new_tab(browser, iserver)
    try:
        await tab.page.set_viewport_size(PHONE)
        page = await guest_with_a_session(tab, "Mine")
        await page.locator("#identity-name").click()
        await page.locator("#identity-name-input").fill("W" * 60)
        await page.locator("#identity-panel button", has_text="Save name").click()
        await expect(page.locator("#identity-name")).to_have_text("W" * 60)  # whole, for screen readers
        for path in ("/streams", "/history"):
            page = await tab.open(path)
            await expect(page.locator("#identity-name")).to_have_text("W" * 60)
            assert await page.evaluate(WIDE) == {"wide": [], "width": PHONE["width"]}, path
    finally:
        await tab.page.context.close()
