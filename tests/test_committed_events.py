"""Pipelined changes committed without a task (``SocketRouter.on``'s ``submit``, the fast lane's
``SessionServer._commit_now``): a recorder's status change is sent to Redis from the read that
brought it and answered from its reply's callback. These tests hold that lane to the rules of
``protocol.order`` -- acks in the order sent, among events that take a task too; every hold
released, even when the Redis connection is cut under the commits -- and check that it is the
lane the changes take.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from protocol import order
from server.transport.leanws import LeanWebSocket
from storage.lean_redis import CLIENT_NAME
from tests.helpers import Client, RedisProcess, ServerUnderTest, emit_all, fast_lane_only
from tests.patterns.test_events import new_pattern
from tests.test_pipelined_events import _burst_while_held, _tempo


async def _recorder(server: ServerUnderTest, clients: list[Client], session_id: str) -> Client:
    """alice's connection, having started recording ``session_id`` once: her next changes need
    no read first, and the server's link knows the status script."""
    recorder = Client(server.url, server.token("alice"))
    clients.append(recorder)
    await recorder.connect()
    assert (await recorder.call("set_session_status", {"session_id": session_id, "status": "recording"}))["ok"]
    return recorder


def _statuses(session_id: str, statuses: list[str]) -> list[tuple[str, Any]]:
    return [("set_session_status", {"session_id": session_id, "status": s}) for s in statuses]


@fast_lane_only
async def test_a_recorders_status_changes_commit_without_a_task(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks: list[Any] = []
    take_turn = LeanWebSocket._take_turn

    async def counted(self: LeanWebSocket, message: str | bytes, turn: order.Turn) -> None:
        tasks.append(message)
        await take_turn(self, message, turn)

    monkeypatch.setattr(LeanWebSocket, "_take_turn", counted)
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    recorder = await _recorder(server, clients, session_id)
    tasks.clear()

    statuses = ["paused", "recording"] * order.DEPTH
    answered = await asyncio.wait_for(emit_all(recorder, _statuses(session_id, statuses)), 10)

    assert tasks == [], f"{len(tasks)} of {len(statuses)} changes took a task"
    assert [index for index, _ in answered] == list(range(len(statuses)))
    acks = [ack for _, ack in answered]
    assert [(a["ok"], a["status"], a["changed"]) for a in acks] == [(True, s, True) for s in statuses]
    offsets = [a["offset"] for a in acks]
    assert offsets == list(range(offsets[0], offsets[0] + len(statuses)))
    # Every change reaches the session's subscribers, in order (each hold was released).
    await watcher.wait_for(lambda: offsets[-1] in watcher.offsets(session_id), timeout=10)
    delivered = [d["data"]["status"] for d in watcher.named("session_status") if d["offset"] >= offsets[0]]
    assert delivered == statuses


@fast_lane_only
async def test_a_steady_recorders_changes_take_no_consumer_task_and_keep_their_order(
    server: ServerUnderTest, clients: list[Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sending one change at a time brings one event per read: its change starts in
    that read (no consumer task: one per event cost a task, its steps and a loop turn). A
    message that may not pipeline (a subscribe) between them is still answered in its place."""
    consumers: list[LeanWebSocket] = []
    consume = LeanWebSocket._consume

    async def counted(self: LeanWebSocket) -> None:
        consumers.append(self)
        await consume(self)

    monkeypatch.setattr(LeanWebSocket, "_consume", counted)
    session_id = await server.create_session("alice")
    other_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    recorder = await _recorder(server, clients, session_id)
    consumers.clear()

    statuses = ["paused", "recording"] * 4
    offsets = []
    for status in statuses:
        ack = await recorder.call("set_session_status", {"session_id": session_id, "status": status})
        assert ack["ok"] and ack["changed"] and ack["status"] == status, ack
        offsets.append(ack["offset"])
    assert consumers == [], f"{len(consumers)} of {len(statuses)} lone changes took a consumer task"
    assert offsets == list(range(offsets[0], offsets[0] + len(statuses)))
    await watcher.wait_for(lambda: offsets[-1] in watcher.offsets(session_id), timeout=10)

    # A change, a subscribe (it may not pipeline: it waits for the change) and a change, sent
    # together: answered in the order sent, the subscribe by the consumer task.
    sends = [
        *_statuses(session_id, ["paused"]),
        ("subscribe_on_session", {"session_id": other_id}),
        *_statuses(session_id, ["recording"]),
    ]
    answered = await asyncio.wait_for(emit_all(recorder, sends), 10)
    assert [index for index, _ in answered] == [0, 1, 2]
    assert [ack["ok"] for _, ack in answered] == [True, True, True], answered
    assert [answered[0][1]["offset"], answered[2][1]["offset"]] == [offsets[-1] + 1, offsets[-1] + 2]
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == "recording"


@fast_lane_only
async def test_commits_without_a_task_keep_their_place_among_handled_events(
    server: ServerUnderTest, clients: list[Client], redis: Redis
) -> None:
    """Status changes (no task) and a pattern editor's ops (a task each: they read before they
    commit) from one connection, all held in Redis at once: answered in the order sent."""
    session_id = await server.create_session("alice")
    pattern_id = await new_pattern(server)
    recorder = await _recorder(server, clients, session_id)
    assert (await recorder.call("subscribe_on_session", {"session_id": pattern_id}))["ok"]
    assert (await recorder.call("pattern_op", _tempo(pattern_id, 0)))["ok"]

    sends: list[tuple[str, Any]] = []
    for n in range(1, order.DEPTH // 2 + 1):
        sends += [_statuses(session_id, ["paused" if n % 2 else "recording"])[0], ("pattern_op", _tempo(pattern_id, n))]
    acks, sent = await _burst_while_held(server, redis, recorder, sends)
    assert sent >= 1

    answered = await asyncio.wait_for(acks, 10)
    assert [index for index, _ in answered] == list(range(len(sends)))
    assert all(ack["ok"] for _, ack in answered), answered
    status_offsets = [ack["offset"] for _, ack in answered if "status" in ack]
    assert status_offsets == sorted(status_offsets) and len(set(status_offsets)) == len(status_offsets)
    assert [ack["seq"] for _, ack in answered if "seq" in ack] == list(range(1, order.DEPTH // 2 + 1))
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == ("paused" if (order.DEPTH // 2) % 2 else "recording")


@fast_lane_only
async def test_a_redis_connection_cut_under_commits_without_a_task_answers_each_and_releases_every_hold(
    server: ServerUnderTest, clients: list[Client], redis: Redis, redis_process: RedisProcess
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    recorder = await _recorder(server, clients, session_id)
    statuses = ["paused", "recording"] * (order.DEPTH // 2)
    plain = Redis.from_url(redis_process.url, decode_responses=True)
    try:
        (lean,) = [c for c in await plain.client_list() if c.get("name") == CLIENT_NAME]

        async def cut() -> None:
            assert await plain.execute_command("CLIENT", "KILL", "ID", lean["id"]) in (1, True)

        acks, sent = await _burst_while_held(server, redis, recorder, _statuses(session_id, statuses), while_held=cut)
    finally:
        await plain.aclose()
    assert sent >= order.DEPTH

    answered = await asyncio.wait_for(acks, 10)
    assert [index for index, _ in answered] == list(range(len(statuses)))
    # Each is answered: applied, or refused as unavailable (the client may retry it).
    assert all(ack["ok"] or ack["error"] == "unavailable" for _, ack in answered), answered
    assert any(not ack["ok"] for _, ack in answered)
    # No hold was left behind: the next change reaches the subscriber.
    session = await server.services.voice.get(session_id)
    assert session is not None
    following = "paused" if session.status == "recording" else "recording"
    ack = await recorder.call("set_session_status", {"session_id": session_id, "status": following})
    assert ack["ok"], ack
    await watcher.wait_for(lambda: ack["offset"] in watcher.offsets(session_id), timeout=10)
