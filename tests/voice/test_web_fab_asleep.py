"""A computer that sleeps for days while the FAB records: on waking, the audio goes up, as its owner.

The page's clock is Playwright's (it jumps the days at once); the connection dies with the sleep
(a SocketGate cut), and the access token the page holds has run out by its clock when it wakes.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from playwright.async_api import expect

from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.voice.waits import status_becomes, stored_chunks

pytestmark = pytest.mark.timeout(120)

DAY_MS = 86_400_000
# A chunk holds the seconds recorded around the sleep (the test's), never the sleep itself.
AWAKE_AT_MOST_MS = 30_000


async def test_a_recording_through_a_two_day_sleep_is_uploaded_without_the_sleep(
    server: ServerUnderTest, tab: Tab
) -> None:
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.page.clock.install()  # the page's clock, moved by the test (time flows meanwhile)
    page = await tab.open("/")
    await expect(page.locator("#fab-new")).to_be_enabled()
    await page.locator("#fab-new").click()  # a first visit: the click makes the guest
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    user_id = json.loads(await page.evaluate("localStorage.getItem('sessionhub.identity')"))["user_id"]
    session_id = await server.services.voice.active_id(user_id)
    assert session_id is not None
    await asyncio.sleep(1.5)  # recorded before the lid closes

    await gate.cut()  # asleep: the connection is gone (the server pauses the recording at once)
    await page.clock.fast_forward(2 * DAY_MS)  # ... for two days, as the page's clock sees it
    gate.release()  # awake: the page connects again

    # The chunk recorded before the sleep is cut on waking and stored, a few seconds long.
    [first] = await stored_chunks(server, session_id, 1, timeout_s=15)
    assert first["end_ms"] - first["start_ms"] < AWAKE_AT_MOST_MS, first
    assert first["client_duration_ms"] < AWAKE_AT_MOST_MS, first
    await expect(page.locator("#fab-held")).to_be_hidden()  # nothing kept back on the device
    # Recording goes on into the same session, as the same guest (its token renewed, not replaced).
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", user_id)
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    second = (await stored_chunks(server, session_id, 2, timeout_s=15))[1]
    assert second["start_ms"] - first["start_ms"] >= 2 * DAY_MS - AWAKE_AT_MOST_MS, (first, second)
    assert second["end_ms"] - second["start_ms"] < AWAKE_AT_MOST_MS, second
    # The pause reaches the server on its own call, not with the last chunk: it may come after it.
    await status_becomes(server, session_id, "paused")
