"""The bus survives its pub/sub link dropping: no event is missed, readiness tells the truth."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from protocol import order
from tests.conftest import start_server
from tests.helpers import OWNER, Client, RedisProcess, ServerUnderTest, fast_lane_only
from tests.test_pipelined_events import _burst_while_held

STATUSES = ["recording", "paused"]


async def test_killing_the_pubsub_connection_loses_no_event(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id = await server.create_session("alice")
    watchers = [await server.subscriber(clients, session_id) for _ in range(3)]

    killed = 0
    for i in range(300):
        await server.services.voice.set_status(session_id, STATUSES[i % 2], OWNER)
        if i % 60 == 30:
            killed += await redis.client_kill_filter(_type="pubsub")
        elif i % 60 == 59:  # let the bus come back before the next kill
            await _until(lambda: _pubsub_clients(redis), 1)
        await asyncio.sleep(0)
    assert killed == 5
    for watcher in watchers:
        await watcher.wait_for(lambda w=watcher: w.offsets(session_id) == list(range(2, 302)), timeout=10)


async def test_quiet_room_is_backfilled_after_a_reconnect(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """Events published while the link is down, with nothing after them, still arrive."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    # Published right after the kill, before the bus has resubscribed: no live copy reaches it.
    await server.services.voice.set_status(session_id, "recording", OWNER)
    await server.services.voice.set_status(session_id, "paused", OWNER)
    await watcher.wait_for(lambda: watcher.offsets(session_id) == [2, 3], timeout=10)


async def test_readyz_follows_redis(tmp_path: Path, clients: list[Client]) -> None:
    own = RedisProcess(tmp_path / "redis", appendonly=True)
    own.start()
    srv = await start_server(own.url, tmp_path / "srv")
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> int:
                async with http.get(f"{srv.url}/readyz") as resp:
                    return resp.status

            assert await ready() == 200
            own.stop()
            await _until(lambda: ready(), 503)
            async with http.get(f"{srv.url}/healthz") as resp:
                assert resp.status == 200
            own.start()
            await _until(lambda: ready(), 200)
    finally:
        await srv.stop()
        own.stop()


async def _pubsub_clients(redis: Any) -> int:
    return min(1, len(await redis.client_list(_type="pubsub")))


async def _until(probe: Any, want: int, timeout_s: float = 15) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (got := await probe()) != want:
        assert asyncio.get_running_loop().time() < deadline, f"stayed {got}"
        await asyncio.sleep(0.1)


async def test_a_member_whose_snapshot_is_ahead_of_the_room_gets_no_repeat(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """The room lags (its link dropped) while a new member's snapshot already covers the lag."""
    session_id = await server.create_session("alice")
    first = await server.subscriber(clients, session_id)
    late = Client(server.url, server.token("alice"))
    clients.append(late)
    await late.connect()
    repeats = 0
    changes = 0
    for round_ in range(5):
        assert await redis.client_kill_filter(_type="pubsub") >= 1
        for _ in range(3):  # published while the bus is away: the room is behind the log
            await server.services.voice.set_status(session_id, STATUSES[changes % 2], OWNER)
            changes += 1
        ack = await late.call("subscribe_on_session", {"session_id": session_id})
        end = 1 + 3 * (round_ + 1)
        await first.wait_for(lambda end=end: first.offsets(session_id)[-1:] == [end], timeout=10)
        await asyncio.sleep(0.05)
        repeats += len([o for o in late.offsets(session_id) if o <= ack["offset"]])
        await late.call("unsubscribe_from_session", {"session_id": session_id})
        late.clear_events()
    assert repeats == 0


async def test_small_rooms_are_written_without_a_task_per_event(server: ServerUnderTest, clients: list[Client]) -> None:
    """A small room's round is a callback (issue 26: a task per committed event cost the
    fan-out several times a callback); what it delivers is unchanged."""
    sessions = [await server.create_session("alice") for _ in range(8)]
    owner = await server.subscriber(clients, sessions[0])
    watcher = await server.subscriber(clients, sessions[0])
    for session_id in sessions[1:]:
        for client in (owner, watcher):
            assert (await client.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    round_tasks = 0

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal round_tasks
        round_tasks += getattr(coro, "__qualname__", "") == "Bus._write_rounds"
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(counting)
    try:
        acks = await asyncio.gather(
            *(owner.call("set_session_status", {"session_id": s, "status": "recording"}) for s in sessions)
        )
        assert all(a["ok"] for a in acks), acks
        for client in (owner, watcher):
            await client.wait_for(lambda c=client: all(c.offsets(s) for s in sessions))
    finally:
        loop.set_task_factory(previous)
    for session_id, ack in zip(sessions, acks, strict=True):
        assert watcher.offsets(session_id) == [ack["offset"]] == owner.offsets(session_id)
    assert round_tasks == 0


@fast_lane_only  # several holds released in one pass: a pipelined burst of one connection
async def test_the_small_rooms_of_a_loop_pass_are_written_back_to_back_by_one_callback(
    server: ServerUnderTest, clients: list[Client], redis: Redis, monkeypatch: Any
) -> None:
    """The rounds of the small rooms that took events in one pass go out from one callback, the
    subscribers' sockets written one after another (at 1,000 sessions x 10 subscribers a
    callback per room let the loop's other work come between the writes: 22% more CPU per
    event); a round that fails leaves the others written."""
    bus = server.services.bus
    sessions = [await server.create_session("alice") for _ in range(order.DEPTH)]
    owner = await server.subscriber(clients, sessions[0])
    watcher = await server.subscriber(clients, sessions[0])
    for session_id in sessions[1:]:
        for client in (owner, watcher):
            assert (await client.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    passes: list[int] = []
    write_all_soon, write_soon = type(bus)._write_all_soon, type(bus)._write_soon
    failing = sessions[3]

    def counted_pass(self: Any) -> None:
        passes.append(len(self._soon))
        write_all_soon(self)

    def one_failing(self: Any, room: Any) -> None:
        if room.session_id == failing:
            raise RuntimeError("a bug in one round")
        write_soon(self, room)

    monkeypatch.setattr(type(bus), "_write_all_soon", counted_pass)
    monkeypatch.setattr(type(bus), "_write_soon", one_failing)
    warm = await server.create_session("alice")  # the link is open, the status script known loaded
    assert (await owner.call("set_session_status", {"session_id": warm, "status": "final_uploading"}))["ok"]
    # Held in Redis together: their replies and messages come back in one read.
    held, _ = await _burst_while_held(
        server, redis, owner, [("set_session_status", {"session_id": s, "status": "final_uploading"}) for s in sessions]
    )
    answered = await asyncio.wait_for(held, 10)
    acks = {sessions[index]: ack for index, ack in answered}
    assert all(a["ok"] for a in acks.values()), acks
    others = [s for s in sessions if s != failing]
    await watcher.wait_for(lambda: all(watcher.offsets(s) for s in others), timeout=10)
    for session_id in others:
        assert watcher.offsets(session_id) == [acks[session_id]["offset"]]
    assert max(passes) > 1, passes  # several rooms' rounds in one callback


async def test_the_bus_stops_even_when_a_call_swallows_its_cancellation(server: ServerUnderTest) -> None:
    """A Redis call that swallows the listener's cancellation (returns instead, and forgets it
    was asked to stop) must not hold the shutdown: the bus asks again until the listener ends."""
    bus = server.services.bus
    pubsub = bus._pubsub  # type: ignore[attr-defined]
    real_get_messages = pubsub.get_messages
    swallowed = 0
    entered = asyncio.Event()

    async def swallowing_get_messages(timeout: float) -> Any:
        nonlocal swallowed
        entered.set()
        try:
            return await real_get_messages(timeout)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed += 1
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()  # what a library that swallows it leaves: nothing says "stop"
            return []

    pubsub.get_messages = swallowing_get_messages
    await asyncio.wait_for(entered.wait(), 5)  # the listener waits in it now (it polls every 20 ms)
    async with asyncio.timeout(4):
        await bus.stop()
    assert swallowed == 1
    assert not bus.alive


async def test_the_listener_does_not_ask_asyncio_for_its_task_per_message(
    server: ServerUnderTest, clients: list[Client], monkeypatch: Any
) -> None:
    """The listener goes round once per pub/sub message: on Python 3.11 each ask for the running
    task is a getpid() system call, one per committed event at saturation (issue 26). It asks
    once; whether it was asked to stop is still checked every round (the test above)."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    listener = server.services.bus._task  # type: ignore[attr-defined]
    real_current_task = asyncio.current_task
    asked = 0

    def counting(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Task[Any] | None:
        nonlocal asked
        task = real_current_task(loop)
        asked += task is listener
        return task

    monkeypatch.setattr(asyncio, "current_task", counting)
    for i in range(50):
        await server.services.voice.set_status(session_id, STATUSES[i % 2], OWNER)
    await watcher.wait_for(lambda: watcher.offsets(session_id) == list(range(2, 52)), timeout=10)
    assert asked == 0


async def test_a_node_reads_the_id_secret_again_after_redis_came_back_empty(tmp_path: Path) -> None:
    """Event ids are sealed with a secret kept in Redis, read once per node: after a Redis that
    came back empty, the next node to write made another, and a node on the old one issued ids
    no other node took as evidence of what it delivered (nor it theirs), until it restarted."""
    own = RedisProcess(tmp_path / "redis")  # no persistence: it comes back empty
    own.start()
    first = await start_server(own.url, tmp_path / "first")
    second = None
    try:
        await first.create_session("alice")  # an event: the node has read the secret
        reconnects = first.services.metrics.bus_reconnects
        before = reconnects._value.get()
        own.stop()
        own.start()
        async with asyncio.timeout(15):
            while reconnects._value.get() == before:  # its bus's link is back
                await asyncio.sleep(0.02)
        second = await start_server(own.url, tmp_path / "second")
        await second.create_session("bob")  # the secret made anew, by another node
        session_id = await first.create_session("alice")  # first time: tests/test_redis_restarted.py
        position = await first.services.log.position(session_id)
        [(_, entry)] = await first.services.redis.xrange(first.services.keys.log(session_id))
        event_id = json.loads(entry["e"])["id"]
        assert second.services.log.sealed(session_id, position.epoch, position.offset, event_id), event_id
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
        own.stop()
