"""A connection's pipelined events (protocol.order): several handled at once, as if one by one.

A recorder may keep several status changes in flight. The fast lane starts each while the ones
before it wait for Redis, sends their commits to Redis together and writes their acks together;
these tests hold it to what one-by-one handling gives: the same acks, in the order sent, the
same state and log, every ack ahead of its fan-out, every hold released even when the sender
has gone.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from protocol import order
from storage.lean_redis import LeanRedis
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest, emit_all, fast_lane_only
from tests.patterns.test_events import new_pattern, player, stored_state
from tests.patterns.test_http import track

# How long a test waits for the server to send a burst's commits (a few ms when it does). The
# server sends requests of its own meanwhile (sweeps, heartbeats: 9 in 10 s measured), fewer
# than a burst's commits within that time, so a server without the pipeline (one commit out,
# then its reply awaited) stays below the count.
HELD_BOUND_S = 3.0
# Changes that commit with one request each: no read before (as a recording's start has), no
# lease. Each may follow the other.
STATUSES = ("final_uploading", "error")


def _link_requests(server: ServerUnderTest) -> int:
    redis = server.services.redis
    assert isinstance(redis, LeanRedis) and redis.lean is not None
    return redis.lean.requests


async def _requests_sent(server: ServerUnderTest, before: int, count: int) -> int:
    """Wait (at most HELD_BOUND_S) until ``count`` requests went over the server's pipelined
    Redis link since it stood at ``before``; how many went."""
    deadline = asyncio.get_running_loop().time() + HELD_BOUND_S
    while (sent := _link_requests(server) - before) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)  # polling for a state, bounded by the deadline
    return sent


async def _burst_while_held(
    server: ServerUnderTest,
    redis: Redis,
    client: Client,
    sends: list[tuple[str, Any]],
    while_held: Callable[[], Awaitable[None]] | None = None,
) -> tuple[asyncio.Future[list[tuple[int, Any]]], int]:
    """Send ``sends`` at once while Redis holds every write back (``CLIENT PAUSE ... WRITE``):
    the future of their acks, and how many requests the server sent meanwhile (waited for until
    ``order.DEPTH``). One by one, the second event would start only after the first commit's
    reply, which the pause holds back. ``while_held`` runs before the writes are let go."""
    before = _link_requests(server)
    await redis.execute_command("CLIENT", "PAUSE", 20_000, "WRITE")
    try:
        acks = emit_all(client, sends)
        sent = await _requests_sent(server, before, order.DEPTH)
        if while_held is not None:
            await while_held()
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    return acks, sent


@fast_lane_only
async def test_a_connections_status_changes_reach_redis_together(
    server: ServerUnderTest, clients: list[Client], redis: Redis
) -> None:
    ids = [await server.create_session("alice") for _ in range(order.DEPTH)]
    recorder = Client(server.url, server.token("alice"))
    clients.append(recorder)
    await recorder.connect()
    warm = await server.create_session("alice")  # the link is open, the status script known loaded
    assert (await recorder.call("set_session_status", {"session_id": warm, "status": STATUSES[0]}))["ok"]

    sends = [("set_session_status", {"session_id": i, "status": STATUSES[0]}) for i in ids]
    acks, sent = await _burst_while_held(server, redis, recorder, sends)
    assert sent >= order.DEPTH, f"{sent} requests before the first commit's reply"

    answered = await asyncio.wait_for(acks, 10)
    assert [index for index, _ in answered] == list(range(order.DEPTH))
    assert [(a["ok"], a["session_id"], a["status"], a["previous"]) for _, a in answered] == [
        (True, i, STATUSES[0], "ready") for i in ids
    ]


@fast_lane_only
async def test_a_handled_turn_leaves_no_garbage_cycle(server: ServerUnderTest, clients: list[Client]) -> None:
    """Every pipelined event's task, context, coroutine and turn are freed when it is done, not
    left in a reference cycle for the garbage collector (the task's context holds the turn: a
    finished turn must not hold its task)."""
    session_id = await server.create_session("alice")
    recorder = Client(server.url, server.token("alice"))
    clients.append(recorder)
    await recorder.connect()
    assert (await recorder.call("set_session_status", {"session_id": session_id, "status": STATUSES[0]}))["ok"]
    sends = [
        ("set_session_status", {"session_id": session_id, "status": STATUSES[(n + 1) % 2]})
        for n in range(4 * order.DEPTH)
    ]
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable is kept, to be looked at
    try:
        answered = await asyncio.wait_for(emit_all(recorder, sends), 10)
        assert all(ack["ok"] for _, ack in answered), answered
        gc.collect()
        # Turns only: each is in its task's cycle, and a task of the test's own client (or a
        # library's) that ends in some other cycle is not what this looks for.
        cycles = [o for o in gc.garbage if isinstance(o, order.Turn)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert cycles == [], f"{len(cycles)} turns of {len(sends)} events were left in cycles (with their tasks)"


@fast_lane_only
async def test_an_editors_ops_reach_redis_together(
    server: ServerUnderTest, clients: list[Client], redis: Redis
) -> None:
    session_id = await new_pattern(server)
    editor = await player(server, clients, session_id)
    assert (await editor.call("pattern_op", _tempo(session_id, 0)))["ok"]  # the link is open

    sends = [("pattern_op", _tempo(session_id, seq)) for seq in range(1, order.DEPTH + 1)]
    acks, sent = await _burst_while_held(server, redis, editor, sends)
    assert sent >= order.DEPTH, f"{sent} requests before the first op's reply"

    answered = await asyncio.wait_for(acks, 10)
    assert [index for index, _ in answered] == list(range(order.DEPTH))
    assert [a["seq"] for _, a in answered] == list(range(1, order.DEPTH + 1))
    assert [a["offset"] for _, a in answered] == sorted(a["offset"] for _, a in answered)
    assert (await stored_state(server, session_id))["tempo"] == 60 + order.DEPTH


def _tempo(session_id: str, seq: int) -> dict[str, Any]:
    return {"session_id": session_id, "seq": seq, "op": {"type": "set_tempo", "tempo": 60 + seq}}


async def _replay(client: Client, sends: list[tuple[str, Any]]) -> list[Any]:
    """Each send awaited before the next: the acks one-by-one handling gives."""
    return [await client.call(event, data) for event, data in sends]


def _burst(session_id: str, other_id: str) -> list[tuple[str, Any]]:
    """Pipelined changes mixed with what is not pipelined: other events, refusals, bad input."""
    status = "set_session_status"
    return [
        (status, {"session_id": session_id, "status": "recording"}),
        (status, {"session_id": session_id, "status": "recording"}),  # no change: a repeat
        (status, {"session_id": session_id, "status": "cutting"}),
        ("subscribe_on_session", {"session_id": session_id}),
        (status, {"session_id": session_id, "status": "ready"}),
        (status, {"session_id": session_id, "status": "recording"}),
        (status, {"session_id": other_id, "status": "recording"}),  # someone else's: forbidden
        (status, {"session_id": session_id, "status": "warp"}),  # not a status
        ("no_such_event", {"session_id": session_id}),
        (status, {"session_id": "not-an-id", "status": "paused"}),
        (status, {"session_id": session_id, "status": "paused"}),
        (status, {"session_id": session_id, "status": "cutting"}),  # only from recording: refused
        ("unsubscribe_from_session", {"session_id": session_id}),
        (status, {"session_id": session_id, "status": "recording"}),
        (status, {"session_id": session_id, "status": "paused"}),
    ]


def _comparable(ack: Any, names: dict[str, str]) -> Any:
    """An ack with the run's own session ids named by their role, and without what names the
    log's epoch (each session's own)."""
    if isinstance(ack, dict):
        ack = {k: v for k, v in ack.items() if k not in ("epoch", "last_id")}
    text = json.dumps(ack, sort_keys=True)
    for session_id, role in names.items():
        text = text.replace(session_id, role)
    return json.loads(text)


async def test_a_burst_is_answered_as_one_by_one_handling_answers_it(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    other_id = await server.create_session("mallory")
    runs: list[list[Any]] = []
    for burst in (True, False):
        session_id = await server.create_session("alice")
        alice = Client(server.url, server.token("alice"))
        clients.append(alice)
        await alice.connect()
        sends = _burst(session_id, other_id)
        if burst:
            answered = await asyncio.wait_for(emit_all(alice, sends), 20)
            assert [index for index, _ in answered] == list(range(len(sends)))  # acks in send order
            acks = [ack for _, ack in answered]
        else:
            acks = await _replay(alice, sends)
        names = {session_id: "<session>", other_id: "<other>"}
        runs.append([_comparable(a, names) for a in acks])
        session = await server.services.voice.get(session_id)
        assert session is not None and session.status == "paused"
    burst_acks, one_by_one = runs
    assert burst_acks == one_by_one
    outcomes = [a.get("changed", a.get("error")) for a in burst_acks]  # not a vacuous comparison:
    assert outcomes.count(True) >= 5 and {"invalid_state", "forbidden", "unknown_event", "invalid_payload"} <= set(
        outcomes
    )


@pytest_asyncio.fixture
async def slow_server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose connections may send 5 events at once, then one a second."""
    srv = await start_server(redis_process.url, tmp_path, event_rate_per_s=1.0, event_burst=5)
    yield srv
    await srv.stop()


async def test_refusals_over_the_rate_keep_their_place_among_pipelined_acks(
    slow_server: ServerUnderTest, clients: list[Client], redis: Redis
) -> None:
    session_id = await slow_server.create_session("alice")
    alice = Client(slow_server.url, slow_server.token("alice"))
    clients.append(alice)
    await alice.connect()
    statuses = ["recording", "paused"] * 5
    answered = await asyncio.wait_for(
        emit_all(alice, [("set_session_status", {"session_id": session_id, "status": s}) for s in statuses]), 20
    )
    assert [index for index, _ in answered] == list(range(len(statuses)))
    outcomes = [ack.get("error", ack.get("status")) for _, ack in answered]
    # Five tokens: the first five are applied in order, every later one refused (a token comes
    # back each second, so one more may pass; it is applied in its place all the same).
    assert outcomes[:5] == statuses[:5]
    assert all(o in ("rate_limited", statuses[i + 5]) for i, o in enumerate(outcomes[5:])), outcomes
    applied = [o for o in outcomes if o != "rate_limited"]
    session = await slow_server.services.voice.get(session_id)
    assert session is not None and session.status == applied[-1]
    entries = await redis.xrange(slow_server.services.keys.log(session_id))
    logged = [
        json.loads(f["e"])["data"]["status"] for _, f in entries if json.loads(f["e"])["type"] == "session_status"
    ]
    assert logged == applied


@fast_lane_only
async def test_a_sender_gone_mid_burst_still_lets_every_committed_change_out(
    server: ServerUnderTest, clients: list[Client], redis: Redis
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    sender = Client(server.url, server.token("alice"))
    clients.append(sender)
    await sender.connect()
    warm = await server.create_session("alice")  # the status script is known loaded on the link
    assert (await sender.call("set_session_status", {"session_id": warm, "status": STATUSES[0]}))["ok"]
    statuses = list(STATUSES) * (order.DEPTH // 2)

    sends = [("set_session_status", {"session_id": session_id, "status": s}) for s in statuses]
    # Every commit is in Redis' hands when the sender goes, with them in flight: no ack reaches it.
    acks, sent = await _burst_while_held(server, redis, sender, sends, while_held=sender.close)
    assert sent >= order.DEPTH
    if acks.done():  # the gone sender's emits may have failed: its acks never come either way
        acks.exception()
    else:
        acks.cancel()

    # Each is committed, and reaches the watcher: the holds of the gone sender's events were
    # released all the same (a hold left behind keeps the last events from everyone, for good).
    offsets = list(range(2, 2 + order.DEPTH))
    await watcher.wait_for(lambda: watcher.offsets(session_id)[: order.DEPTH] == offsets, timeout=10)
    assert [data["data"]["status"] for data in watcher.named("session_status")][: order.DEPTH] == statuses


async def test_turns_let_each_event_go_on_only_behind_the_one_before() -> None:
    trace: list[str] = []

    async def event(name: str, turn: order.Turn, reads_first: bool) -> None:
        if reads_first:
            await asyncio.sleep(0)  # a read before the commit: the next event must not overtake
        wait = turn.issue_wait()
        if wait is not None:
            await wait
        turn.mark_issued()
        trace.append(f"commit {name}")
        await asyncio.sleep(0)  # the reply
        wait = turn.finish_wait()
        if wait is not None:
            await wait
        order.after_ack(trace.append, f"after {name}")
        trace.append(f"ack {name}")

    turns: list[order.Turn] = []
    tasks = []
    last = None
    for name, reads_first in (("a", True), ("b", False), ("c", True)):
        last = turn = order.Turn(last)
        turns.append(turn)

        async def run(name: str = name, turn: order.Turn = turn, reads_first: bool = reads_first) -> None:
            order.TURN.set(turn)
            try:
                await event(name, turn, reads_first)
            finally:
                turn.finish()

        task = asyncio.get_running_loop().create_task(run())
        turn.task = task
        tasks.append(task)
    await asyncio.gather(*tasks)
    for turn in turns:
        turn.run_after()
    assert [t for t in trace if t.startswith("commit")] == ["commit a", "commit b", "commit c"]
    assert [t for t in trace if t.startswith("ack")] == ["ack a", "ack b", "ack c"]
    assert trace[-3:] == ["after a", "after b", "after c"]  # what the transport runs once acks are written
    assert all(t.previous is None for t in turns)  # no chain of finished turns is kept


@pytest.mark.parametrize("finished", [True, False])
async def test_after_ack_waits_for_the_transport_only_inside_a_live_turn(finished: bool) -> None:
    ran: list[int] = []
    turn = order.Turn(None)
    turn.task = asyncio.current_task()
    if finished:
        turn.finish()
    token = order.TURN.set(turn)
    try:
        order.after_ack(ran.append, 1)
    finally:
        order.TURN.reset(token)
    if finished:  # a finished turn's transport has run its callbacks already: not kept for it
        assert ran == [] and turn.after == []
        await asyncio.sleep(0)
        assert ran == [1]
    else:
        assert turn.after and ran == []


def _ops(session_id: str) -> list[tuple[str, Any]]:
    """An editor's burst: ops of every outcome, a retry, a beat."""
    op, seq = "pattern_op", iter(range(1, 100))
    return [
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "add_track", "track": track("t2")}}),
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "toggle_step", "trackId": "t2", "step": 3}}),
        (
            op,
            {"session_id": session_id, "seq": 2, "op": {"type": "toggle_step", "trackId": "t2", "step": 3}},
        ),  # a retry
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "set_tempo", "tempo": 9999}}),  # refused
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "delete_track", "trackId": "nope"}}),
        ("pattern_heartbeat", {"session_id": session_id}),  # not joined: not found
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "set_tempo", "tempo": 140}}),
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "delete_track", "trackId": "t2"}}),
        (op, {"session_id": session_id, "seq": next(seq), "op": {"type": "set_swing", "swing": 20}}),
    ]


async def test_an_editors_burst_of_ops_leaves_what_one_by_one_handling_leaves(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    runs: list[tuple[list[Any], dict[str, Any]]] = []
    for burst in (True, False):
        session_id = await new_pattern(server)
        editor = await player(server, clients, session_id)
        sends = _ops(session_id)
        if burst:
            answered = await asyncio.wait_for(emit_all(editor, sends), 20)
            assert [index for index, _ in answered] == list(range(len(sends)))
            acks = [ack for _, ack in answered]
        else:
            acks = await _replay(editor, sends)
        runs.append(([_comparable(a, {session_id: "<session>"}) for a in acks], await stored_state(server, session_id)))
    (burst_acks, burst_state), (one_by_one, one_by_one_state) = runs
    assert burst_acks == one_by_one
    assert burst_state == one_by_one_state
    outcomes = [a.get("duplicate", a.get("error")) for a in burst_acks]  # not a vacuous comparison
    assert outcomes.count(False) >= 5 and True in outcomes and "not_found" in outcomes


async def test_a_failing_callback_after_an_ack_leaves_the_others_run() -> None:
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("a bug")

    turn = order.Turn(None)
    turn.after = [(ran.append, ("first",)), (fail, ()), (ran.append, ("third",))]
    turn.run_after()
    assert ran == ["first", "third"] and turn.after == []
