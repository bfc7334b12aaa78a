"""A viewer's Clip Moment while the server cannot sign the page in again, or store the clip, for now.

A /watch page open past its access token's life presses Clip Moment just as the server's Redis is
away: the refresh answers 503. The page connected with no token, was refused, said "Not signed in"
and never tried again until reloaded; the clip was dropped with the server's words ("token
expired; renew_token, or reconnect with a new one"), and a clip pressed after Redis was back was
never sent. A clip refused ``unavailable`` on a live page was dropped too, and pressed again it
landed at the later moment (audit "longopen"). Now the page stays "offline" and tries again, and
the clip is sent once the server answers, as the same clip, placed at the press.
"""

from __future__ import annotations

import asyncio
import json
import re

from playwright.async_api import Page, Route, WebSocketRoute, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.streams.helpers import create_stream, http

HOUR_MS = 3_600_000
AWAY = {"error": "unavailable", "message": "a dependency does not answer; try again", "retry_after_s": 1}


async def _watching(server: ServerUnderTest, tab: Tab) -> tuple[str, Page]:
    """A started stream, and a first-visit guest's /watch page of it, live."""
    session_id = await create_stream(server, title="Late night")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    page = await tab.open(f"/watch/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return session_id, page


async def _clips(server: ServerUnderTest, session_id: str) -> list[dict[str, object]]:
    stored = await server.services.redis.hvals(server.services.keys.stream_clips(session_id))
    return [json.loads(raw) for raw in stored]


async def test_a_clip_pressed_past_the_tokens_life_while_the_refresh_fails_is_sent_once_it_works(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id, page = await _watching(server, tab)
    refreshes: list[int] = []

    async def away(route: Route) -> None:
        refreshes.append(1)
        await route.fulfill(status=503, json=AWAY)

    await page.route("**/api/auth/refresh", away)
    # Two hours on the server's clock alone: the page's token has run out there.
    server.services.clock.shift_ms += 2 * HOUR_MS
    await page.locator("#note-input").fill("past midnight")
    await page.locator("#clip-button").click()
    pressed = asyncio.get_running_loop().time()
    badge = page.locator("#connection")
    await expect(badge).to_have_attribute("data-state", "offline")
    # Away past the clip's own wait for the renewal (10 s): tried again after pauses, not given up.
    while len(refreshes) < 3 or asyncio.get_running_loop().time() - pressed < 11:
        await asyncio.sleep(0.1)
    await expect(badge).to_have_attribute("data-state", "offline")
    assert await _clips(server, session_id) == []
    await expect(page.locator("#confirmation")).not_to_contain_text("Not clipped")

    await page.unroute("**/api/auth/refresh")  # Redis is back
    await expect(badge).to_have_attribute("data-state", "live", timeout=20_000)
    await expect(page.locator("#confirmation")).to_contain_text("Clipped! Segment 1")
    [clip] = await _clips(server, session_id)
    assert clip["note"] == "past midnight", clip
    # A second press, now that all is well, is sent at once.
    await page.locator("#note-input").fill("and another")
    server.services.clock.shift_ms += 3_600_000  # past the viewer's cooldown
    await page.locator("#clip-button").click()
    await expect(page.locator("#mine li")).to_have_count(2, timeout=10_000)
    assert sorted(str(c["note"]) for c in await _clips(server, session_id)) == ["and another", "past midnight"]


class Unavailable:
    """Answers the page's first ``count`` clip_submit ``unavailable`` itself (the server's Redis
    away: refused, nothing stored), and forwards every other frame both ways."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.refused: list[str] = []

    async def install(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"/socket\.io/"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            found = re.match(r'42(\d+)\["clip_submit",(.*)\]$', message) if isinstance(message, str) else None
            if found and len(self.refused) < self.count:
                self.refused.append(json.loads(found.group(2))["submission_id"])
                ws.send(f"43{found.group(1)}" + json.dumps([{"ok": False, **AWAY}]))
                return
            server_side.send(message)

        ws.on_message(from_page)
        server_side.on_message(ws.send)


async def test_a_clip_refused_unavailable_is_sent_again_as_the_same_clip_placed_at_the_press(
    server: ServerUnderTest, tab: Tab
) -> None:
    refuser = Unavailable(count=2)
    await refuser.install(tab.page)
    session_id, page = await _watching(server, tab)
    await page.locator("#note-input").fill("that jump")
    await page.locator("#clip-button").click()
    await expect(page.locator("#confirmation")).to_contain_text("Clipped! Segment 1", timeout=15_000)
    assert len(refuser.refused) == 2 and len(set(refuser.refused)) == 1, refuser.refused  # the same clip
    [clip] = await _clips(server, session_id)
    assert clip["note"] == "that jump", clip
    submitted = await server.services.redis.hgetall(server.services.keys.stream_submissions(session_id))
    # The id the refused tries carried (kept by viewer): one clip, from the first press.
    assert [key.split("|")[-1] for key in submitted] == [refuser.refused[0]], submitted
    # Placed at the press, not at the try that went through (two pauses of 2 s later).
    started_at = int(await server.services.redis.hget(server.services.keys.session(session_id), "seg_started_at"))
    assert int(clip["created_at"]) - started_at - int(clip["offset_ms"]) >= 3_000, clip
