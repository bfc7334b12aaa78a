"""Stock Socket.IO clients -- python-socketio's, as bots and adapters use it -- through what a
real deployment does to them: a restart, a burst of events sent without waiting, a burst of
events to receive, over WebSocket and over long-polling, on the server's lane.

Found by an independent contract suite: python-socketio never reconnected after a restart on
WebSocket (the server's Engine.IO CLOSE packet reads to python-engineio as a disconnect meant for
good); 17 events sent without waiting over long-polling lost the session (one POST, and
python-engineio decodes at most 16 packets of one); a poll answer of more than 16 packets made
python-socketio's client abort (its decoder has the same cap).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.conftest import start_server
from tests.helpers import ANSWER_BOUND_S, Client, RedisProcess, serving_lane
from tests.raw_wire import port_of

TRANSPORTS = [["websocket"], ["polling"]]


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling"])
async def test_a_python_client_reconnects_after_the_server_restarts(
    redis_process: RedisProcess, redis: Any, tmp_path: Path, transports: list[str]
) -> None:
    server = await start_server(redis_process.url, tmp_path / "first")
    port = port_of(server.url)
    session_id = await server.create_session("alice")
    token = server.token("alice")
    client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.5)
    connects: list[str] = []
    connected = asyncio.Event()

    def connect() -> None:
        connects.append(client.transport())
        connected.set()

    client.on("connect", connect)

    again = None
    try:
        await client.connect(server.url, auth={"token": token}, transports=transports, wait_timeout=ANSWER_BOUND_S)
        await server.stop()
        connected.clear()
        again = await start_server(redis_process.url, tmp_path / "second", listen_port=port)
        await asyncio.wait_for(connected.wait(), 20)  # the client's own reconnection, within its backoff
        ack = await client.call("subscribe_on_session", {"session_id": session_id}, timeout=ANSWER_BOUND_S)
        assert ack["ok"] is True, ack
        assert connects == [transports[0]] * 2
    finally:
        await client.disconnect()
        if again is not None:
            await again.stop()
        else:
            await server.stop()


async def test_events_sent_without_waiting_over_long_polling_are_all_answered(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    """socket.io clients put every packet queued while a POST is out into the next POST."""
    server = await start_server(redis_process.url, tmp_path)
    try:
        session_id = await server.create_session("alice")
        client = await Client(server.url, server.token("alice")).connect(["polling"])
        try:
            answers = await asyncio.gather(
                *(client.call("subscribe_on_session", {"session_id": session_id}) for _ in range(40))
            )
            assert [answer["ok"] for answer in answers] == [True] * 40, answers
            assert client.sio.connected
        finally:
            await client.sio.disconnect()
    finally:
        await server.stop()


@pytest.mark.skipif(
    serving_lane() == "stock",
    reason="the stock lane answers a poll with everything queued (python-engineio's own poll); "
    "README's transport notes say so",
)
async def test_a_long_polling_python_client_takes_a_burst_of_events(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    """A catch-up of 30 events comes in one poll answer unless the server splits it."""
    server = await start_server(redis_process.url, tmp_path)
    try:
        session_id = await server.create_session("alice")
        writer = await Client(server.url, server.token("alice")).connect()
        first = await writer.call("subscribe_on_session", {"session_id": session_id})
        for i in range(30):
            change = {"session_id": session_id, "status": ("recording", "paused")[i % 2]}
            answer = await writer.call("set_session_status", change)
            assert answer["ok"] is True, answer
        await writer.sio.disconnect()
        watcher = await Client(server.url, server.token("alice")).connect(["polling"])
        try:
            position = {key: first[key] for key in ("epoch", "offset", "last_id")}
            ack = await watcher.call("subscribe_on_session", {"session_id": session_id, **position})
            assert (ack["ok"], ack.get("recovered")) == (True, True), ack
            await watcher.wait_for(lambda: len(watcher.offsets(session_id)) >= 30, timeout=20)
            assert watcher.sio.connected
        finally:
            await watcher.sio.disconnect()
    finally:
        await server.stop()
