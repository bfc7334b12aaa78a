"""Edits past the connection's event rate are held and sent again at the server's pace.

Before: the ops refused `rate_limited` were dropped with a toast each ("too many events; slow
down"): 64 clicks made in one go left 45 steps on, and the person read 19 toasts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from playwright.async_api import Browser, expect
from redis.asyncio import Redis

from tests.browser import Tab, listen_to_live_regions, live_texts, new_tab
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, stored_steps

STEPS = 64
PRESSED_ARE = """(expected) => {
  const cells = [...document.querySelectorAll('.track-row .step')];
  return cells.length === expected.length
    && cells.every((cell, i) => (cell.getAttribute('aria-pressed') === 'true') === expected[i]);
}"""
PACE_NOTICE = "Lots of changes at once: they are being sent at the pace the server takes them."


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """The server as deployed: 20 events a second a connection, bursts of 40 (the tests' is 1000)."""
    srv = await start_server(redis_process.url, tmp_path, event_rate_per_s=20.0, event_burst=40)
    yield srv
    await srv.stop()


async def test_a_burst_of_clicks_past_the_rate_loses_none_and_keeps_their_order(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    row = track("t1", steps=[False] * STEPS, parameterLocks=[None] * STEPS, stepCount=STEPS)
    session_id = await new_pattern(server, state={"tracks": [row]})
    await listen_to_live_regions(tab.page)
    other = await new_tab(browser, server)
    try:
        page = await open_live(tab, f"/s/{session_id}")
        watcher = await open_live(other, f"/s/{session_id}")
        await expect(page.locator(".track-row .step")).to_have_count(STEPS)

        # Every step on, then the last four off again: 68 clicks in one task, far past the burst.
        await page.evaluate(
            """() => {
              const cells = [...document.querySelectorAll('.track-row .step')];
              for (const cell of cells) cell.click();
              for (const cell of cells.slice(-4)) cell.click();
            }"""
        )
        # The held ops go after ones the server let in meanwhile (its rate refills as it reads the
        # burst), so the other player passes through 60 steps on with step 59 still held: it is
        # the whole row, step by step, that tells every op is in.
        expected = [True] * (STEPS - 4) + [False] * 4
        await watcher.wait_for_function(PRESSED_ARE, arg=expected)
        await page.wait_for_function(PRESSED_ARE, arg=expected)
        assert await stored_steps(server, session_id) == [True] * (STEPS - 4) + [False] * (128 - STEPS + 4)

        # One calm notice, and none of the refusals' own words.
        said = await live_texts(page, "toast")
        assert said == [PACE_NOTICE], said
        assert not other.errors, other.errors
    finally:
        await other.page.context.close()
