"""A pattern op sent again after its answer was lost is that op, not a second one."""

from __future__ import annotations

import asyncio

from playwright.async_api import WebSocketRoute, expect

from storage.patterns.repository import PatternSessions
from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live


class DeafGate(SocketGate):
    """A SocketGate that can also lose what the server sends: a link that drops the answers."""

    def __init__(self) -> None:
        super().__init__()
        self.deaf = False
        self.heard: list[str] = []

    def _from_server(self, page_side: WebSocketRoute, message: str | bytes) -> None:
        if self.deaf:
            return
        if isinstance(message, str):
            self.heard.append(message)
        super()._from_server(page_side, message)


async def stored_track_ids(server: ServerUnderTest, session_id: str) -> list[str]:
    loaded = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert loaded is not None
    return [t["id"] for t in loaded[0].state["tracks"]]


async def test_a_track_added_whose_answer_was_lost_is_not_refused_when_sent_again(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The page sent the add again as a new op after it reconnected: refused 'conflict' (the
    track was in), and the player was shown an error for a track that had been added."""
    session_id = await new_pattern(server, state={"tracks": [track("t1")]})
    gate = DeafGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    gate.deaf = True  # the add reaches the server; its answer and its event never come back
    await page.locator("#add-sample").select_option("snare")
    await page.locator("#add-track").click()
    for _ in range(100):
        if len(await stored_track_ids(server, session_id)) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(await stored_track_ids(server, session_id)) == 2
    await gate.cut()
    gate.deaf = False
    answered = len(gate.heard)
    gate.release()  # the page reconnects, catches up and sends the add again
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    for _ in range(200):  # the answer to the add sent again
        if any('"duplicate"' in m or '"conflict"' in m for m in gate.heard[answered:]):
            break
        await asyncio.sleep(0.05)
    await page.evaluate("new Promise((done) => setTimeout(done, 0))")
    assert any('"duplicate":true' in m for m in gate.heard[answered:]), gate.heard[answered:]
    assert await page.locator("#toast").is_hidden()
    await expect(page.locator(".track-row")).to_have_count(2)
    assert len(await stored_track_ids(server, session_id)) == 2
