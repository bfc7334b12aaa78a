"""Every refusal of a name puts the saved name back in its field and says why; a name being typed
in a track another player deletes is said to be lost.

Before: only an `invalid_payload` did; a track name refused `payload_too_large` (the pattern at its
size limit) stayed in the field as if saved, under a passing toast. A name half typed in a track
another player deleted vanished with its row, without a word."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from playwright.async_api import WebSocketRoute, expect
from redis.asyncio import Redis

from tests.browser import SocketGate, Tab
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import api, new_pattern, open_live

MAX_BODY_BYTES = 2048
LOCK = {"pitch": -24, "volume": 1.5, "tie": True}
GONE = "Another player deleted the track you were renaming, so “Big Kick” was not saved."


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A pattern may be 2 KiB as saved: one track with a few locks reaches it."""
    srv = await start_server(redis_process.url, tmp_path, patterns_max_body_bytes=MAX_BODY_BYTES)
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def roomy(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server with the default size limit: two tracks are stored in more than 2 KiB (each
    track's 128 steps and locks), which a save could not carry back, so none is made."""
    srv = await start_server(redis_process.url, tmp_path)
    yield srv
    await srv.stop()


def with_locks(count: int) -> dict[str, Any]:
    """One track, stored as is (128 steps and locks), with its first `count` steps locked."""
    locks: list[Any] = [LOCK] * count + [None] * (128 - count)
    row = track("t1", steps=[False] * 128, parameterLocks=locks, stepCount=16)
    return {"tracks": [row], "tempo": 120, "swing": 0, "version": 1}


async def saved(server: ServerUnderTest, session_id: str, count: int) -> bool:
    body = json.dumps({"state": with_locks(count)}, separators=(",", ":"))
    url = f"{server.url}/api/sessions/{session_id}"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.put(url, data=body, headers=headers) as answer:
        return answer.status == 200


async def fill_to_the_cap(server: ServerUnderTest, session_id: str) -> None:
    """Save the most locks a save may hold: one lock (32 bytes) more would not be saved."""
    low, high = 0, 128  # saved with `low` locks; not with `high`
    assert await saved(server, session_id, low)
    assert not await saved(server, session_id, high)
    while high - low > 1:
        middle = (low + high) // 2
        if await saved(server, session_id, middle):
            low = middle
        else:
            high = middle
    assert await saved(server, session_id, low)


async def test_a_track_name_refused_at_the_size_limit_puts_the_saved_name_back(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id = await new_pattern(server)
    await fill_to_the_cap(server, session_id)
    page = await open_live(tab, f"/s/{session_id}")
    row = page.locator(".track-row").first
    name, message = row.locator(".track-name"), row.locator(".track-name-error")
    await expect(name).to_have_value("Kick")

    await name.fill("Ω" * 32)
    await name.press("Enter")
    await expect(message).to_have_text("Not saved: the pattern would outgrow what a save may hold.")
    await expect(name).to_have_value("Kick")
    await expect(name).to_have_attribute("aria-describedby", "track-name-error-t1")
    stored = await api(server, "GET", f"/api/sessions/{session_id}")
    assert stored["state"]["tracks"][0]["name"] == "Kick"


async def test_a_track_name_being_typed_as_another_player_deletes_the_track_is_said_lost(
    roomy: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    tracks = [track("t1"), track("t2", name="Snare", sampleId="snare")]
    session_id = await new_pattern(roomy, state={"tracks": tracks})
    page = await open_live(tab, f"/s/{session_id}")
    name = page.locator('.track-row[data-track="t1"] .track-name')
    await name.fill("Big Kick")  # typed, not entered

    other = Client(roomy.url, roomy.token("other-player"))
    clients.append(other)
    await other.connect()
    op = {"type": "delete_track", "trackId": "t1"}
    assert (await other.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True

    await expect(page.locator('.track-row[data-track="t1"]')).to_have_count(0)
    await expect(page.locator("#toast")).to_have_text(GONE)


class HeldGate(SocketGate):
    """A SocketGate that can hold back what the server sends, and pass it on, in order, later."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[WebSocketRoute, str | bytes]] | None = None

    def _from_server(self, page_side: WebSocketRoute, message: str | bytes) -> None:
        if self.kept is None:
            super()._from_server(page_side, message)
        else:
            self.kept.append((page_side, message))

    def hold_in(self) -> None:
        self.kept = []

    async def until_answered(self, error: str) -> None:
        """Wait (bounded) until an answer refusing with ``error`` is held back."""
        for _ in range(200):
            if any(isinstance(m, str) and f'"{error}"' in m for _, m in self.kept or []):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no answer of {error} was held back")

    def pass_in(self) -> None:
        kept, self.kept = self.kept or [], None
        for page_side, message in kept:
            super()._from_server(page_side, message)


async def test_a_rename_entered_as_another_player_deletes_the_track_is_said_lost(
    roomy: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The rename left before the page heard of the delete, and was refused `not_found`: the
    toast said "no track with that id (it may have been deleted)"."""
    tracks = [track("t1"), track("t2", name="Snare", sampleId="snare")]
    session_id = await new_pattern(roomy, state={"tracks": tracks})
    gate = HeldGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    name = page.locator('.track-row[data-track="t1"] .track-name')
    await expect(name).to_have_value("Kick")

    gate.hold_in()  # the delete's event, and the rename's answer, wait
    other = Client(roomy.url, roomy.token("other-player"))
    clients.append(other)
    await other.connect()
    op = {"type": "delete_track", "trackId": "t1"}
    assert (await other.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True
    await name.fill("Big Kick")
    await name.press("Enter")
    await gate.until_answered("not_found")
    gate.pass_in()

    await expect(page.locator('.track-row[data-track="t1"]')).to_have_count(0)
    await expect(page.locator("#toast")).to_have_text(GONE)
