"""Counters of sessions created, Socket.IO messages and bytes sent, and closes by reason (issue 25)."""

from __future__ import annotations

from handlers.metrics import CLOSE_REASONS
from server.app import SIO_KEY
from tests.helpers import Client, ServerUnderTest
from tests.test_metrics import Samples, connected, scrape, until, value

SENT = "sessionhub_socket_messages_sent_total"
BYTES = "sessionhub_socket_bytes_sent_total"
CLOSED = "sessionhub_connections_closed_total"


async def test_sessions_created_are_a_counter_by_kind_not_a_gauge_of_today(server: ServerUnderTest) -> None:
    for _ in range(2):
        await server.create_session("alice")
    await server.services.voice.create(owner_id="bob", telegram_user_id="", name="other")
    samples = await scrape(server)
    assert value(samples, "sessionhub_sessions_created_total", kind="voice") == 3
    # The gauge reset at midnight is gone (the admin dashboard reads created_today from its API).
    assert not [key for key in samples if key[0].startswith("sessionhub_sessions_created_today")]


async def test_messages_and_bytes_sent_count_each_fan_out_member_and_each_ack(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    watchers = [await server.subscriber(clients, session_id) for _ in range(3)]
    before = await scrape(server)
    assert value(before, SENT) > 0 and value(before, BYTES) > value(before, SENT)  # connects, acks, snapshots
    ack = await watchers[0].call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"] is True
    for watcher in watchers:
        await watcher.wait_for(lambda w=watcher: w.offsets(session_id) == [2])
    after = await scrape(server)
    # One ack, and one event to each of the three members (counted once per round, times 3).
    assert _delta(after, before, SENT) == 1 + 3
    fanned = _delta(after, before, BYTES)
    assert fanned > 3 * len('42["session_event",{}]')


async def test_closes_are_counted_by_reason(server: ServerUnderTest, clients: list[Client]) -> None:
    leaving = await connected(server, clients)
    kicked = await connected(server, clients, user="bob")
    await server.app[SIO_KEY].disconnect(kicked.sio.get_sid())
    await until(lambda: _closes(server, 1))
    assert await _closed(server) == {"server disconnect": 1}
    # A python-socketio client's close reaches the server as its DISCONNECT or as the end of
    # its WebSocket, whichever the server reads first.
    await leaving.close()
    await until(lambda: _closes(server, 2))
    closed = await _closed(server)
    assert closed["server disconnect"] == 1
    assert closed.get("client disconnect", 0) + closed.get("transport close", 0) == 1
    assert set(closed) <= CLOSE_REASONS


async def _closed(server: ServerUnderTest) -> dict[str, float]:
    samples = await scrape(server)
    return {dict(labels)["reason"]: v for (name, labels), v in samples.items() if name == CLOSED}


async def _closes(server: ServerUnderTest, count: int) -> bool:
    return sum((await _closed(server)).values()) == count


def _delta(after: Samples, before: Samples, name: str) -> float:
    return value(after, name) - value(before, name)
