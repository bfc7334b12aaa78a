"""An item leaves the history with its last session: a tap, a deletion, an upload deleted.

Before, ``remove`` dropped the session and kept its item (its total at 0, its metadata): a person
who skipped through items, or deleted their plays, filled the most distinct items
(``SESSIONHUB_LISTENING_MAX_ITEMS``) with items the history no longer showed, and every new item
was refused ``limit_reached`` while the history was empty (audit "retention"). Each deleted
upload also left its client id in the history for good.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.listening.support import FrozenClock, auth, listener, start_on_clock

MAX_ITEMS = 3


@pytest_asyncio.fixture
async def small(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[ServerUnderTest]:
    srv = await start_on_clock(redis_process.url, tmp_path, clock, listening_max_items=MAX_ITEMS)
    yield srv
    await srv.stop()


async def call(server: ServerUnderTest, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{server.url}{path}", json=body, headers=auth(server)) as r:
            return r.status, await r.json()


def upload_body(item: str, start: int, *, client_id: str) -> dict[str, Any]:
    return {
        "item_id": item,
        "device_id": "d1",
        "client_id": client_id,
        "started_at": start,
        "ended_at": start + 60_000,
        "item": {"title": f"Title of {item}"},
    }


async def test_taps_leave_no_item_behind_and_a_new_item_plays(
    small: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(small, clients)
    for item in ("x", "y", "z", "w"):  # one more than the cap: each a tap, deleted as too short
        assert (await alice.report(item, "playing", item={"title": f"Title of {item}"}))["action"] == "started"
        assert (await alice.report(item, "paused"))["action"] == "deleted"
    keys = small.services.keys
    assert await small.services.redis.zcard(keys.listening_items(alice.history_id)) == 0
    assert await small.services.redis.hlen(keys.listening_meta(alice.history_id)) == 0
    played = await alice.report("v", "playing")
    assert played["ok"] and played["action"] == "started", played


async def test_deleting_sessions_releases_their_items_but_not_one_still_played(
    small: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    history_id = (await listener(small, clients, subscribe=False)).history_id
    start = clock.now_ms() - 3_600_000
    made = []
    for i, item in enumerate(("a", "b", "c")):
        status, body = await call(
            small, "POST", "/api/listening/upload", upload_body(item, start + i * 120_000, client_id=f"u{i}")
        )
        assert status == 201, body
        made.append(body["listening"]["id"])
    # A second session of "a": deleting the first keeps the item, its total and its title.
    status, body = await call(small, "POST", "/api/listening/upload", upload_body("a", start + 600_000, client_id="u3"))
    assert status == 201, body
    status, body = await call(small, "POST", "/api/listening/upload", upload_body("d", start + 900_000, client_id="u4"))
    assert (status, body["error"]) == (409, "limit_reached"), body  # the cap holds
    for session_id in made:
        status, body = await call(small, "DELETE", f"/api/listening/sessions/{session_id}")
        assert status == 200, body
    status, stats = await call(small, "GET", "/api/listening/stats")
    assert status == 200
    assert [(i["item_id"], i["total_ms"], i["title"]) for i in stats["items"]] == [("a", 60_000, "Title of a")]
    status, body = await call(small, "POST", "/api/listening/upload", upload_body("d", start + 900_000, client_id="u4"))
    assert status == 201, body

    # A deleted upload sent again (its ack lost) is not brought back, and its id moved out of the
    # history's own ids to the ones put aside, which expire.
    status, body = await call(small, "POST", "/api/listening/upload", upload_body("b", start + 120_000, client_id="u1"))
    assert status in (200, 201) and body["action"] == "duplicate", body
    status, listed = await call(small, "GET", "/api/listening/sessions")
    assert sorted(s["item_id"] for s in listed["sessions"]) == ["a", "d"]
    redis, keys = small.services.redis, small.services.keys
    assert sorted(await redis.hkeys(keys.listening_clients(history_id))) == ["u3", "u4"]
    assert sorted(await redis.hkeys(keys.listening_cleared_clients(history_id))) == ["u0", "u1", "u2"]
    assert 0 < await redis.pttl(keys.listening_cleared_clients(history_id)) <= 24 * 3600 * 1000
