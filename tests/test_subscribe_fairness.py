"""A storm of subscribes does not hold anyone else's subscribe behind all of it.

Catch-ups (a snapshot or replay read and sent) run 16 at once (handlers.subscriptions); when
more wait, a free place goes to the waiting client addresses in turn, and within an address to
the connection that caught up least often (handlers.admission.FairSlots). A shared semaphore
served them in arrival order: behind 1,000 storming connections a quiet client's subscribe
waited for ~1,000 catch-ups.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from handlers.admission import FairSlots
from tests.conftest import start_server
from tests.helpers import Client
from tests.patterns.test_http import full_state, track
from tests.raw_wire import RawWebSocket, port_of

STORM_CONNECTIONS = 300
STORM_SUBSCRIBES = 4  # each, sent at once (a connection's events are handled one after another)


async def test_places_go_to_addresses_in_turn_and_to_the_least_served_connection_first() -> None:
    slots = FairSlots(1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, address: str, rank: int) -> None:
        async with slots.held(address, rank):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(hold("first", "a", 0))
    await asyncio.sleep(0)
    waiting = [
        asyncio.create_task(hold(name, address, rank))
        for name, address, rank in [("a5", "a", 5), ("a6", "a", 6), ("b0", "b", 0), ("a0", "a", 0), ("a7", "a", 7)]
    ]
    gone = asyncio.create_task(hold("gone", "c", 0))
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == ["first"] and slots.waiting() == 6
    gone.cancel()  # a waiter that leaves is skipped
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *waiting), 5)
    # Address a's turn (its least served first), b's, then a's again: b's one waiter did not
    # wait behind a's four, nor a's newcomer behind a's regulars.
    assert order == ["first", "a0", "b0", "a5", "a6", "a7"]
    assert slots.used == 0 and slots.waiting() == 0


async def test_a_quiet_clients_subscribe_is_not_held_behind_a_storm(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, max_subscriptions=1000)
    storm: list[RawWebSocket] = []
    quiet = Client(srv.url, srv.token("bob"))
    try:
        # A ~60 KB pattern: each catch-up reads and sends all of it.
        tracks = [track(f"t{i}", steps=[True] * 128, parameterLocks=[{"pitch": 1}] * 128) for i in range(12)]
        async with aiohttp.ClientSession(base_url=srv.url) as http:
            async with http.post("/api/sessions", json={"state": full_state(tracks=tracks)}) as response:
                assert response.status == 201
                session_id = (await response.json())["id"]
        token = srv.token("alice")
        opened = await asyncio.gather(
            *(RawWebSocket.socketio(port_of(srv.url), token) for _ in range(STORM_CONNECTIONS))
        )
        storm = [ws for ws, _ in opened]
        await quiet.connect()
        subscribe = json.dumps(["subscribe_on_session", {"session_id": session_id}])
        acked = [0] * STORM_CONNECTIONS
        all_started = asyncio.Event()

        async def storming(index: int, ws: RawWebSocket) -> None:
            for ack_id in range(1, STORM_SUBSCRIBES + 1):
                ws.send(f"42{ack_id}{subscribe}")
            for ack_id in range(1, STORM_SUBSCRIBES + 1):
                await ws.receive_until(f"43{ack_id}[", timeout=120)
                acked[index] += 1
                if all(acked):
                    all_started.set()

        storms = [asyncio.create_task(storming(i, ws)) for i, ws in enumerate(storm)]
        await asyncio.wait_for(all_started.wait(), 120)
        # Every storming connection caught up once and has more waiting: ~300 catch-ups queued.
        before = sum(acked)
        left = STORM_CONNECTIONS * STORM_SUBSCRIBES - before
        ack = await quiet.call("subscribe_on_session", {"session_id": session_id}, timeout=120)
        during = sum(acked) - before
        assert ack["ok"] is True
        # In arrival order the quiet subscribe waited for every catch-up queued before it (at
        # least one per storming connection still waiting); fairly, for those under way and a
        # few that started meanwhile.
        assert left >= STORM_CONNECTIONS, "the storm ended before the quiet client subscribed"
        assert during < STORM_CONNECTIONS // 2, f"{during} storm subscribes went first ({left} were left)"
        await asyncio.wait_for(asyncio.gather(*storms), 120)
    finally:
        for ws in storm:
            ws.close()
        await quiet.close()
        await srv.stop()
