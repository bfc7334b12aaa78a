"""The orphan flag of every session page's load (seed 001): computed from the access before the
load, which revives the session; and the banner in real Chromium on each page."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.streams.helpers import create_stream, http
from tests.helpers import ServerUnderTest
from tests.admin.test_http import DAY_MS, LONG_TTL_S

BANNER = "#orphan-banner"


async def make_orphan(server: ServerUnderTest, session_id: str, *, days: int = 91) -> None:
    """Move the session's last access ``days`` back, as if nobody had opened it since."""
    redis, keys = server.services.redis, server.services.keys
    # A subscription's access bookkeeping still running would write "now" over "long ago".
    await server.services.sessions.settle()
    kind = str(await redis.hget(keys.session(session_id), "kind"))  # type: ignore[misc]
    # Indexed as its first lookup would (streams and histories are indexed without their kind).
    await redis.hset(keys.admin_kind_of(), session_id, kind)  # type: ignore[misc]
    long_ago = server.services.clock.now_ms() - days * DAY_MS
    for scope in (kind, "*"):
        await redis.zadd(keys.admin_accessed(scope), {session_id: long_ago})


async def load(server: ServerUnderTest, path: str, user: str = "alice") -> dict[str, Any]:
    status, body = await http(server, "GET", path, token=server.token(user, ttl_s=LONG_TTL_S))
    assert status == 200, body
    return dict(body)


async def test_each_session_load_says_whether_it_was_an_orphan_before_it(server: ServerUnderTest) -> None:
    voice = await server.create_session("alice")
    stream = await create_stream(server)
    history = (await load(server, "/api/listening"))["session_id"]
    paths = {voice: f"/voicebot/sessions/{voice}", stream: f"/api/streams/{stream}", history: "/api/listening"}
    for session_id, path in paths.items():
        fresh = await load(server, path)
        assert (fresh["orphaned"], fresh["orphan_days"]) == (False, 90), path
        await make_orphan(server, session_id)
        assert (await load(server, path))["orphaned"] is True, path
        assert (await load(server, path))["orphaned"] is False, path  # the load before revived it
    await make_orphan(server, voice, days=89)
    assert (await load(server, paths[voice]))["orphaned"] is False


async def test_a_forbidden_load_is_no_access(server: ServerUnderTest) -> None:
    voice = await server.create_session("alice")
    await make_orphan(server, voice)
    status, body = await http(server, "GET", f"/voicebot/sessions/{voice}", user="mallory")
    assert (status, body["error"]) == (403, "forbidden")
    assert (await load(server, f"/voicebot/sessions/{voice}"))["orphaned"] is True


async def open_page(tab: Tab, server: ServerUnderTest, path: str, ready: str) -> Page:
    await tab.use_token(server.token("alice", ttl_s=LONG_TTL_S), ttl_s=LONG_TTL_S)
    page = await tab.open(path)
    await expect(page.locator(ready)).to_be_visible()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def test_voice_page_banner_shows_once_dismisses_and_goes_with_the_first_edit(
    server: ServerUnderTest, tab: Tab
) -> None:
    fresh = await server.create_session("alice")
    page = await open_page(tab, server, f"/session/{fresh}", "#session")
    await expect(page.locator(BANNER)).to_be_hidden()
    orphan = await server.create_session("alice")
    await make_orphan(server, orphan)
    page = await open_page(tab, server, f"/session/{orphan}", "#session")
    await expect(page.locator(BANNER)).to_be_visible()
    await expect(page.locator(f"{BANNER} .orphan-days")).to_have_text("90")
    await page.locator("#orphan-dismiss").click()
    await expect(page.locator(BANNER)).to_be_hidden()
    await make_orphan(server, orphan)  # the server would say orphan again: the flag says shown already
    page = await open_page(tab, server, f"/session/{orphan}", "#session")
    await expect(page.locator(BANNER)).to_be_hidden()
    await page.evaluate("localStorage.clear()")
    await make_orphan(server, orphan)
    page = await open_page(tab, server, f"/session/{orphan}", "#session")
    await expect(page.locator(BANNER)).to_be_visible()
    await server.services.voice.record_outcome(orphan, {"name": "edited"}, {"session_name": "edited"})
    await expect(page.locator(BANNER)).to_be_hidden()  # an edit: active again


async def test_stream_dashboard_and_viewer_pages_show_the_banner(server: ServerUnderTest, tab: Tab) -> None:
    fresh = await create_stream(server)
    page = await open_page(tab, server, f"/streams/{fresh}", "#dashboard")
    await expect(page.locator(BANNER)).to_be_hidden()
    orphan = await create_stream(server)
    await make_orphan(server, orphan)
    page = await open_page(tab, server, f"/streams/{orphan}", "#dashboard")
    await expect(page.locator(BANNER)).to_be_visible()
    await page.locator("#orphan-dismiss").click()
    await expect(page.locator(BANNER)).to_be_hidden()
    await page.evaluate("localStorage.clear()")
    await make_orphan(server, orphan)
    page = await open_page(tab, server, f"/watch/{orphan}", "#watch")
    await expect(page.locator(BANNER)).to_be_visible()
    status, _ = await http(server, "POST", f"/api/streams/{orphan}/state", json={"action": "start"})
    assert status == 200
    await expect(page.locator(BANNER)).to_be_hidden()  # the streamer's change reached the viewer
    page = await open_page(tab, server, f"/watch/{fresh}", "#watch")
    await expect(page.locator(BANNER)).to_be_hidden()


async def test_listening_history_page_shows_the_banner(server: ServerUnderTest, tab: Tab) -> None:
    page = await open_page(tab, server, "/history", "#history-title")
    await expect(page.locator(BANNER)).to_be_hidden()
    # The subscription's snapshot schedules a refresh that loads /api/listening again, and that
    # load revives the history: let it land before the history is made an orphan, or it would
    # write "now" over "long ago" and the reload would find nothing to show.
    await page.wait_for_function("() => Number(document.body.dataset.loaded) >= 2")
    history_id = await page.evaluate("document.body.dataset.historyId")
    await make_orphan(server, history_id)
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator(BANNER)).to_be_visible()
    await page.locator("#orphan-dismiss").click()
    await expect(page.locator(BANNER)).to_be_hidden()
