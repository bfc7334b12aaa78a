"""The history as a session of kind ``listening``: one per user, snapshots, replay, listings, caps."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.listening.support import TOKEN_TTL_S, FrozenClock, Listener, auth, listener, start_on_clock


async def test_racing_first_uses_on_two_nodes_make_one_history(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, redis_process: RedisProcess, tmp_path: Path
) -> None:
    second = await start_on_clock(redis_process.url, tmp_path / "second", clock)
    try:
        tabs = []
        for server in (lserver, second, lserver, second):
            tab = Client(server.url, server.token("dora", ttl_s=TOKEN_TTL_S))
            clients.append(tab)
            tabs.append(await tab.connect())
        acks = await asyncio.gather(*(tab.call("listening_history", {}) for tab in tabs))
        ids = {ack["session_id"] for ack in acks}
        assert len(ids) == 1
        (history_id,) = ids
        assert (await lserver.services.log.position(history_id)).offset == 1  # created once
        # Indexed once: the landing page lists one history, not one per racing tab.
        assert await lserver.services.redis.zrange(lserver.services.keys.user_recent("dora"), 0, -1) == [history_id]
    finally:
        for client in clients:
            await client.close()
        await second.stop()


async def test_snapshot_and_replay_after_a_reconnect(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients, subscribe=False)
    await alice.report("b1", "playing", item={"title": "Book"})
    watcher = Client(lserver.url, lserver.token("alice", ttl_s=TOKEN_TTL_S))
    clients.append(watcher)
    await watcher.connect()
    ack = await watcher.call("subscribe_on_session", {"session_id": alice.history_id})
    [snapshot] = watcher.named("session_snapshot")
    session = snapshot["session"]
    assert session["url"] == "/history" and session["count"] == 1
    assert [(s["item_id"], s["open"]) for s in session["open"]] == [("b1", True)]
    await watcher.close()

    clock.shift_ms += 6000
    await alice.report("b1", "playing")
    await alice.report("b1", "paused")
    again = Client(lserver.url, lserver.token("alice", ttl_s=TOKEN_TTL_S))
    clients.append(again)
    await again.connect()
    replay = await again.call(
        "subscribe_on_session", {"session_id": alice.history_id, "epoch": ack["epoch"], "offset": ack["offset"]}
    )
    assert replay["recovered"] is True and replay["missed"] == 2
    actions = [d["data"]["action"] for n, d in again.events if n == "listening_session"]
    assert actions == ["extended", "finalized"]


async def test_the_history_is_listed_on_the_landing_page(lserver: ServerUnderTest, clients: list[Client]) -> None:
    await listener(lserver, clients)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{lserver.url}/api/me/sessions", headers=auth(lserver)) as r:
            body = await r.json()
    assert "listening" in body["kinds"]
    [entry] = body["sessions"]
    assert (entry["kind"], entry["title"], entry["url"]) == ("listening", "Listening history", "/history")


async def test_devices_playing_at_once_are_capped(lserver: ServerUnderTest, clients: list[Client]) -> None:
    alice = await listener(lserver, clients, subscribe=False)
    cap = 16
    for i in range(cap):
        ack = await Listener(client=alice.client, history_id=alice.history_id, device_id=f"d{i}").report("b", "playing")
        assert ack["action"] == "started"
    extra = Listener(client=alice.client, history_id=alice.history_id, device_id="one-too-many")
    before = (await lserver.services.log.position(alice.history_id)).offset
    refused = await extra.report("b", "playing")
    assert refused["ok"] is False and refused["error"] == "limit_reached"
    # Which cap it was, and its limit, said to the player (not "the session holds as many of these").
    assert (refused["cap"], refused["limit"]) == ("devices", cap)
    assert refused["message"] == "this history holds its maximum of 16 devices playing at once"
    assert (await lserver.services.log.position(alice.history_id)).offset == before
    # A device already playing may still switch items.
    assert (await Listener(client=alice.client, history_id=alice.history_id, device_id="d0").report("c", "playing"))[
        "ok"
    ]


async def test_http_reads_of_a_user_without_history(lserver: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/api/listening/sessions", "/api/listening/stats", "/api/listening/export"):
            async with http.get(f"{lserver.url}{path}", headers=auth(lserver, "newcomer")) as r:
                assert r.status == 200, path
                body: Any = await r.json()
                assert body.get("sessions", body.get("last")) == []
