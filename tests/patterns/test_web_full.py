"""A full pattern session on the page: the watcher is told once, and joins when a place frees.

The page asks to join again at each heartbeat while it only watches (it is not present): each
refusal toasted "This session is full" again, every 10 s, and nothing said it would join.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.browser import Tab, listen_to_live_regions, live_texts
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_events import player
from tests.patterns.test_web import new_pattern
from tests.test_metrics import scrape, until, value

FULL = "This session is full: you can watch and listen, and you will join when a place frees."
FREED = "A place freed: you are playing now."
REFUSED = "Not changed: this session is full, so you can watch and listen until a place frees."
HEARTBEAT_MS = 10_000  # web/js/pattern.js


async def _said(page: Page, text: str) -> bool:
    return text in await live_texts(page, "toast")


def _refused(server: ServerUnderTest, times: int) -> Callable[[], Awaitable[bool]]:
    """Whether the server refused ``times`` joins as full, at least."""

    async def probe() -> bool:
        scraped = await scrape(server)
        return value(scraped, "sessionhub_socket_events_total", event="pattern_join", outcome="session_full") >= times

    return probe


async def test_a_watcher_of_a_full_session_is_told_once_and_joins_when_a_place_frees(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    players = [await player(server, clients, session_id, f"u{i}") for i in range(10)]
    for i, p in enumerate(players):
        ack = await p.call("pattern_join", {"session_id": session_id, "name": f"P{i}", "colour": "#000000"})
        assert ack["ok"] is True, ack
    await tab.page.clock.install()
    await listen_to_live_regions(tab.page)
    page = await tab.open(f"/s/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await until(_refused(server, 1), timeout_s=15)
    for times in (2, 3):  # two heartbeats more, each refused
        await page.clock.run_for(HEARTBEAT_MS)
        await until(_refused(server, times), timeout_s=15)
    assert await live_texts(page, "toast") == [FULL]
    # Said for as long as it watches, not only by a toast gone in 4 s; a tap is refused in the
    # page's words (it said the server's own sentence, "the session is full: its present players…").
    banner = page.locator("#full-banner")
    await expect(banner).to_be_visible()
    await page.locator('.step[data-track="t1"][data-step="2"]').click()
    await until(lambda: _said(page, REFUSED), timeout_s=15)
    await expect(page.locator('.step[data-track="t1"][data-step="2"]')).to_have_attribute("aria-pressed", "false")
    await players[0].call("pattern_leave", {"session_id": session_id})
    await page.clock.run_for(HEARTBEAT_MS)

    async def joined() -> bool:
        return await live_texts(page, "toast") == [FULL, REFUSED, FREED]

    await until(joined, timeout_s=15)
    await expect(banner).to_be_hidden()
