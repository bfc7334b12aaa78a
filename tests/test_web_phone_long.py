"""In Chromium on a 390 px phone: text people typed as one long word (a pasted link, a string of
emoji, 100 W's) wraps inside its line. The lists of sessions and streams, the stream's game and
its clips' notes widened the page to 1,600 px and more: the whole page scrolled sideways."""

from __future__ import annotations

from playwright.async_api import expect

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
    server: ServerUnderTest, tab: Tab, clients: list[Client]
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

    watching = await new_tab(tab.page.context.browser, server)  # type: ignore[arg-type]
    try:
        await watching.page.set_viewport_size(PHONE)
        await watching.use_token(server.token("bob"))
        page = await watching.open(f"/watch/{stream}")
        await expect(page.locator("#mine li").first).to_contain_text(LONG[:20])
        assert await page.evaluate(WIDE) == {"wide": [], "width": PHONE["width"]}, "watch"
    finally:
        await watching.page.context.close()
