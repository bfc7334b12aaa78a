"""In Chromium: /history's Delete all whose answer was lost is sent again as the same press.

The press reaches the server, which deletes the history; the answer never comes back and the
connection drops. Meanwhile the person's car stores a new session. The page, connected again,
sends the same press (its request_id): answered as the first (repeated), it deletes nothing
played since, and the page says the history was deleted. Before, the page said "Delete failed"
and asked the person to press again, which would have deleted the car's session too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web_op_retry import DeafGate
from tests.test_web_stalled_actions import live

HOUR = 3_600_000


async def upload(server: ServerUnderTest, n: int) -> str:
    now = server.services.clock.now_ms()
    body: dict[str, Any] = {
        "item_id": f"item-{n}",
        "device_id": "car",
        "client_id": f"car-{n}",
        "started_at": now - (n + 2) * HOUR,
        "ended_at": now - (n + 1) * HOUR,
        "item": {"title": f"Drive {n}"},
    }
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/api/listening/upload", json=body, headers=headers) as answer,
    ):
        stored = await answer.json()
    assert answer.status == 201, stored
    return str(stored["listening"]["id"])


async def stored(server: ServerUnderTest) -> list[str]:
    history_id = await server.services.redis.get(server.services.keys.listening_history("alice"))
    records = await server.services.redis.hkeys(server.services.keys.listening_records(str(history_id)))
    return sorted(str(r) for r in records)


async def test_delete_all_whose_answer_was_lost_is_resent_and_keeps_what_was_played_since(
    server: ServerUnderTest, tab: Tab
) -> None:
    await upload(server, 0)
    gate = DeafGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    history = await live(tab, "/history")
    await expect(history.locator("#sessions li.listening-row")).to_have_count(1)

    gate.deaf = True  # the press reaches the server; its answer never comes back
    await history.locator("#clear").click()
    await history.locator("#clear-yes").click()
    for _ in range(200):  # a predicate on Redis, polled
        if await stored(server) == []:
            break
        await asyncio.sleep(0.05)
    assert await stored(server) == []
    since = await upload(server, 1)  # the car plays on meanwhile

    await gate.cut()  # the connection drops; the page connects again and sends the press again
    gate.deaf = False
    gate.release()
    await expect(history.locator("#clear-status")).to_have_text("Your history was deleted.", timeout=15_000)
    assert await stored(server) == [since]
    assert sum('"repeated":true' in m for m in gate.heard) == 1, gate.heard[-5:]
    await expect(history.locator("#history-error")).to_be_hidden()
    await history.reload()
    await expect(history.locator("#sessions li.listening-row")).to_have_count(1)
    assert not tab.errors, tab.errors
