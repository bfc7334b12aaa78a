"""The fast path is in effect where it should be, nowhere else, and only on tested versions."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web
from engineio.async_drivers import aiohttp as eio_aiohttp

from server.app import SIO_KEY
from server.transport.engine import LightQueue
from server.transport.fastpath import EngineWebSocket, LightEngineServer
from server.transport.versions import UnsupportedVersions, check_versions, installed_versions
from server.transport.outlet import direct_writer
from tests.helpers import Client, ServerUnderTest, fast_lane_only

pytestmark = fast_lane_only

ROOT = Path(__file__).resolve().parents[2]


def ping_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", "") == "AsyncSocket._send_ping"]


async def test_the_fast_path_is_in_effect(server: ServerUnderTest, clients: list[Client]) -> None:
    sio = server.app[SIO_KEY]
    for _ in range(3):
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect()
    assert type(sio.eio) is LightEngineServer
    sockets = list(sio.eio.sockets.values())
    assert len(sockets) == 3
    for socket in sockets:
        assert type(socket.queue) is LightQueue
        assert isinstance(socket.sh_ws, EngineWebSocket)
        assert direct_writer(socket) is socket.sh_ws
        assert socket.sh_ws.slow_limit_bytes == 1 << 20  # the instance's limit, from settings
    assert ping_tasks() == []  # pings are timer callbacks, not a sleeping task per connection
    assert (await clients[0].call("no_such_event", {}))["error"] == "unknown_event"


def server_tasks() -> list[str]:
    """Names of the running tasks that belong to a connection on the server side."""
    names = [getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()]
    return [n for n in names if n.startswith(("AsyncSocket.", "RequestHandler.", "LeanWebSocket.", "_serve"))]


async def test_no_task_per_idle_connection_and_none_left_per_message(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    before = server_tasks()
    for _ in range(10):
        await server.subscriber(clients, session_id)
    # An idle connection is its transport and its protocol object: aiohttp's connection loop
    # and request handler ended with the handshake, and no Engine.IO reader or writer runs.
    assert server_tasks() == before
    for _ in range(20):  # a message is handled in a task that ends with the connection's inbox
        assert (await clients[0].call("unsubscribe_from_session", {"session_id": session_id}))["ok"]
    await asyncio.sleep(0)
    assert server_tasks() == before


async def test_the_slow_client_limit_is_per_instance(
    server: ServerUnderTest, tmp_path: Path, redis_process: Any
) -> None:
    from tests.conftest import start_server

    other = await start_server(redis_process.url, tmp_path / "b", slow_client_buffer_bytes=65536)
    try:
        assert other.app[SIO_KEY].eio.slow_limit_bytes == 65536
        assert server.app[SIO_KEY].eio.slow_limit_bytes == 1 << 20
    finally:
        await other.stop()


async def test_a_stock_server_built_later_is_unaffected(server: ServerUnderTest) -> None:
    stock = socketio.AsyncServer(async_mode="aiohttp")
    assert stock.eio._async["websocket"] is eio_aiohttp.WebSocket
    assert eio_aiohttp._async["websocket"] is eio_aiohttp.WebSocket

    @stock.on("echo")
    async def echo(sid: str, data: object) -> object:
        return data

    app = web.Application()
    stock.attach(app)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=3
    )  # as `serve`: a lingering client must not hold the teardown
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(f"http://127.0.0.1:{runner.addresses[0][1]}", transports=["websocket"], wait_timeout=5)
        assert await client.call("echo", {"x": 1}, timeout=5) == {"x": 1}
        socket = next(iter(stock.eio.sockets.values()))
        assert getattr(socket, "sh_ws", None) is None and type(socket.queue) is asyncio.Queue
    finally:
        await client.disconnect()
        await stock.shutdown()  # its Engine.IO service task (ping timeouts) ends with it
        await runner.cleanup()


def test_the_installed_versions_are_in_range() -> None:
    check_versions()


def test_versions_outside_the_tested_range_are_refused() -> None:
    too_old = {**installed_versions(), "python-socketio": "5.11.0"}
    with pytest.raises(UnsupportedVersions, match=r"python-socketio 5\.11\.0 \(tested: >=5\.\d+,<5\.\d+\)"):
        check_versions(too_old)
    with pytest.raises(UnsupportedVersions, match="aiohttp missing"):
        check_versions({**installed_versions(), "aiohttp": ""})


def test_serve_refuses_untested_versions_with_one_line_when_fast_is_asked_for() -> None:
    # A real `sessionhub serve` whose metadata reports python-engineio 4.9.0, told to run fast.
    program = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "m.version = lambda name: '4.9.0' if name == 'python-engineio' else real(name)\n"
        "from server.cli import main\n"
        "raise SystemExit(main(['serve', '--port', '1']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "SESSIONHUB_DATA_DIR": "/nonexistent", "SESSIONHUB_TRANSPORT": "fast"},
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "python-engineio 4.9.0" in lines[0], done.stderr


async def test_a_packet_taken_but_not_yet_written_blocks_direct_writes() -> None:
    """Python 3.11's wait_for takes the item in another task, turns before the writer resumes:
    the queue is empty then, yet a direct write would overtake that item."""
    from types import SimpleNamespace

    queue = LightQueue()
    socket = SimpleNamespace(sh_ws=object(), upgraded=True, upgrading=False, queue=queue)
    assert direct_writer(socket) is socket.sh_ws
    getter = asyncio.create_task(asyncio.wait_for(queue.get(), 10))  # as Engine.IO's poll does
    await asyncio.sleep(0)
    queue.put_nowait("ack")
    for _ in range(3):  # let the inner task take it
        await asyncio.sleep(0)
    assert queue.empty()
    assert direct_writer(socket) is None  # taken, not yet written: packets must queue behind it
    assert await getter == "ack"
    queue.task_done()
    assert direct_writer(socket) is socket.sh_ws


async def test_events_keep_their_order_across_the_websocket_upgrade(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    from tests.helpers import OWNER

    session_id = await server.create_session("alice")
    count = 60
    for _ in range(3):
        client = Client(server.url, server.token("alice"))
        clients.append(client)
        await client.connect(transports=["polling", "websocket"])
        await client.call("subscribe_on_session", {"session_id": session_id})
        for status in ["recording", "paused"] * (count // 2):  # while the client upgrades from polling to WebSocket
            await server.services.voice.set_status(session_id, status, OWNER)
            await asyncio.sleep(0)
        await client.wait_for(lambda c=client: len(c.named("session_status")) == count, timeout=10)
        offsets = client.offsets(session_id)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
        assert client.sio.transport() == "websocket"


async def test_the_handshake_answer_and_engineio_open_leave_in_one_write(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncio import selector_events

    from tests.raw_wire import RawWebSocket, port_of

    written: list[bytes] = []
    write = selector_events._SelectorSocketTransport.write

    def counting(self: Any, data: Any) -> None:
        written.append(bytes(data))
        write(self, data)

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counting)
    ws = await RawWebSocket.open(port_of(server.url))
    try:
        assert (await ws.receive()).startswith('0{"sid"')  # type: ignore[union-attr]
    finally:
        ws.close()
    answer = next(data for data in written if data.startswith(b"HTTP/1.1 101"))
    assert b'0{"sid"' in answer  # the OPEN packet rode with the 101


async def test_a_snapshot_and_its_ack_leave_in_one_write(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncio import selector_events

    from tests.raw_wire import RawWebSocket, port_of

    session_id = await server.create_session("alice")
    written: list[bytes] = []
    write = selector_events._SelectorSocketTransport.write

    def counting(self: Any, data: Any) -> None:
        written.append(bytes(data))
        write(self, data)

    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counting)
        ws.send('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
        assert (await ws.ack(1))["ok"] is True
    finally:
        ws.close()
    together = [data for data in written if b"session_snapshot" in data]
    assert len(together) == 1 and b"431[" in together[0]  # the ack rode with the snapshot


def _messages(session_id: str) -> list[str]:
    """Socket.IO EVENT packets of every kind the event lane meets: taken by it (handled events
    with and without an ack id, failures the guard answers) or left to python-socketio (an
    unknown name, a reserved one, malformed JSON, another shape, a binary placeholder)."""
    sid = json.dumps(session_id)
    return [
        f'21["set_session_status",{{"session_id":{sid},"status":"recording"}}]',
        f'22["set_session_status",{{"session_id":{sid},"status":"recording"}}]',  # unchanged
        f'2["set_session_status",{{"session_id":{sid},"status":"paused"}}]',  # no ack asked
        f'23["set_session_status",{{"session_id":{sid},"status":"cutting"}}]',
        f'24["set_session_status",{{"session_id":{sid},"status":"nonsense","seq":5}}]',
        '25["set_session_status",{"session_id":"not-a-uuid"}]',
        f'26["set_session_status",{{"session_id":"{uuid.uuid4()}","status":"paused"}}]',
        f'27["set_session_status",{{"session_id":{sid}}},"extra"]',
        '28["set_session_status"]',
        '29["set_session_status",[1,2]]',
        '2010["set_session_status",{}]',  # a leading zero in the ack id: answered as 10
        '211["no_such_event",{}]',
        '212["connect",{}]',
        '213["set_session_status",{]',
        "214[1,2]",
        "215{}",
        '2/other,16["set_session_status",{}]',
        f'217["set_session_status",{{"session_id":{sid},"status":"recording","n":1e400}}]',
        f'218["set_session_status",{{"session_id":{sid},"status":"paused","name":"\\u00e9\\ud83c\\udfb5"}}]',
    ]


async def _answers(server: ServerUnderTest, messages: list[str], token: str) -> list[str]:
    """The acks (and other text) the server answers ``messages`` with, sent in one go."""
    from tests.raw_wire import RawWebSocket, port_of

    ws, _ = await RawWebSocket.socketio(port_of(server.url), token)
    try:
        for message in messages:
            ws.send("4" + message)
        ws.send('42999["no_such_event"]')  # the last answer: everything before it is in
        answers: list[str] = []
        while not answers or not answers[-1].startswith("43999["):
            answer = await ws.receive()
            assert isinstance(answer, str)
            if answer == "2":
                ws.send("3")
            else:
                answers.append(answer)
        return answers
    finally:
        ws.close()


async def test_the_event_lane_answers_as_python_socketio_does_without_its_dispatch(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    sio = server.app[SIO_KEY]
    dispatched: list[Any] = []
    handle_event = sio._handle_event

    async def counting(*args: Any) -> None:
        dispatched.append(args[3])
        await handle_event(*args)

    monkeypatch.setattr(sio, "_handle_event", counting)
    token = server.token("alice")
    fast_id, stock_id = await server.create_session("alice"), await server.create_session("alice")

    fast = await _answers(server, _messages(fast_id), token)
    taken_usual_way = list(dispatched)
    # The events the lane takes never reach python-socketio's _handle_event; the ones it leaves do.
    names = [data[0] if isinstance(data, list) and data else data for data in taken_usual_way]
    assert names == ["no_such_event", "connect", 1, {}, "set_session_status", "no_such_event"], names  # /other: last

    monkeypatch.setattr(sio.eio, "dispatch", None)  # every event the usual way
    monkeypatch.setattr(sio.eio, "commit_now", None)  # the status changes' commits too
    dispatched.clear()
    stock = await _answers(server, _messages(stock_id), token)
    assert len(dispatched) == 19  # each but the malformed JSON one, and the last
    assert [answer.replace(fast_id, "<id>") for answer in fast] == [
        answer.replace(stock_id, "<id>") for answer in stock
    ]
    # The acks in the order sent, each as python-socketio writes it.
    ids = [int(re.match(r"43(\d+)", answer).group(1)) for answer in fast if answer.startswith("43")]  # type: ignore[union-attr]
    assert ids == sorted(ids) and ids[:9] == list(range(1, 10)) and 10 in ids and ids[-1] == 999, fast
    assert json.loads(fast[0][3:])[0]["ok"] is True and json.loads(fast[1][3:])[0]["changed"] is False


async def test_the_event_lane_keeps_each_connections_order_under_load(server: ServerUnderTest) -> None:
    from tests.raw_wire import RawWebSocket, port_of

    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        statuses = ["recording", "paused"] * 20
        for number, status in enumerate(statuses, start=1):
            ws.send(f'42{number}["set_session_status",{{"session_id":"{session_id}","status":"{status}"}}]')
        acks = [await ws.ack(number) for number in range(1, len(statuses) + 1)]
    finally:
        ws.close()
    assert [ack["status"] for ack in acks] == statuses
    offsets = [ack["offset"] for ack in acks]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


async def test_the_event_lanes_contract_with_python_socketio(server: ServerUnderTest) -> None:
    """What SessionServer._dispatch relies on (the module's docstring lists it)."""
    from engineio import packet as eio_packet
    from socketio import packet as sio_packet

    from protocol import wire_json

    sio = server.app[SIO_KEY]
    # Handlers registered with on(name) are sio.handlers["/"][name], called (sid, *args).
    assert sio.handlers["/"]["set_session_status"].__qualname__ == "SocketRouter.on.<locals>.guarded"
    assert "*" in sio.handlers["/"]
    assert isinstance(sio._binary_packet, dict) and sio.not_handled is not None
    assert sio.eio.dispatch == sio._dispatch
    # An ACK packet of namespace "/" is "3<id><json of the list>"; Engine.IO's MESSAGE "4<text>".
    for value in ({"ok": True, "x": [1, 2.5, "é", None]}, {"big": 2**70}):
        packet = sio.packet_class(sio_packet.ACK, namespace="/", id=77, data=[value])
        assert packet.encode() == "377" + wire_json.dumps([value])
    assert eio_packet.Packet(eio_packet.MESSAGE, data="377[1]").encode() == "4377[1]"
    # Binary in an ack: not JSON text (left to python-socketio, which makes it a BINARY_ACK).
    with pytest.raises(TypeError):
        wire_json.dumps([{"audio": b"\x00"}])
    assert (
        sio.packet_class(sio_packet.ACK, namespace="/", id=1, data=[{"a": b"\x00"}]).packet_type
        == sio_packet.BINARY_ACK
    )
