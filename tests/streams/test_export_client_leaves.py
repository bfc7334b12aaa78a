"""An export whose client has gone stops preparing and frees its slot (audit "session36", 3).

aiohttp runs a handler to its end after its client left (handler cancellation is off): a person
who pressed Cancel on a big stream's export left the server preparing it for seconds in one of
their two export slots, and their next Download was refused "at most 2 exports at once". The
preparation now ends once its client is gone (``handlers/http_common.unless_client_leaves``).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import create_stream, started, store_clips, stored_clip

BIG = 100_000
MOMENTS_CSV = "/export?format=csv&of=moments"


async def _status(http: aiohttp.ClientSession, url: str, owner: dict[str, str]) -> int:
    async with http.get(url, headers=owner) as r:
        await r.read()
        return r.status


async def test_an_export_given_up_by_its_client_frees_its_slot_at_once(
    server: ServerUnderTest, clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="handlers.http_common")
    big, _ = await started(server, clients)
    clips = [
        stored_clip(seq, segment_index=1, offset_ms=seq * 700, note=f"moment {seq}", clipped=False)
        for seq in range(1, BIG + 1)
    ]
    await store_clips(server, big, clips)
    small = await create_stream(server)  # alice's too: exports are counted per person
    owner = {"Authorization": "Bearer " + server.token("alice")}
    base = f"{server.url}/api/streams"
    async with aiohttp.ClientSession() as http:
        # Two exports of the big stream under way: a third of anything is refused.
        leaving = aiohttp.ClientSession()
        given_up: list[asyncio.Future[int]] = []
        async with asyncio.timeout(60):
            while await _status(http, f"{base}/{small}/export?format=csv", owner) != 429:
                # (One refused while this check held a slot is asked again.)
                given_up = [t for t in given_up if not t.done()]
                given_up += [
                    asyncio.ensure_future(_status(leaving, f"{base}/{big}{MOMENTS_CSV}", owner))
                    for _ in range(2 - len(given_up))
                ]
                await asyncio.sleep(0.02)
        # Cancel: their connections closed while the server prepares them (a second or more).
        for task in given_up:
            task.cancel()
        await leaving.close()
        # Both given up (told in the server's log), not made and then found no one to take them,
        # and their slots free: a Download now is answered.
        async with asyncio.timeout(30):
            while len([r for r in caplog.records if "left before its answer was ready" in r.getMessage()]) < 2:
                await asyncio.sleep(0.02)
        assert await _status(http, f"{base}/{small}/export?format=csv", owner) == 200
