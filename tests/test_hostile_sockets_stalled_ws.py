"""WebSockets that stop reading are ended at the write deadline, whatever else they still send;
one that reads slowly but keeps moving gets every event (handlers/write_deadline.py, the fast
lane's hooks in server/transport/fastpath.py, the stock lane's in
server/transport/stock_deadline.py): each test on both lanes (the stock lane's own cases are in
tests/test_hostile_sockets_stalled_stock.py), with raw sockets with a tiny receive buffer, a real
server, and the server's side of each connection as the kernel has it."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from handlers.write_deadline import WRITE_DEADLINE_KEY
from server.app import BUS_KEY, SIO_KEY
from server.transport.stock import StockSessionServer
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest, fast_lane_only
from tests.raw_wire import port_of
from tests.test_hostile_sockets_stalled_http import held_for, server_side
from tests.test_metrics import scrape, value
from tests.transport.test_slow_client import RawSocketIO

DEADLINE_S = 1.0
CUT_WITHIN_S = 8.0
EVENTS = 60
BLOB = {"blob": "x" * 4000}  # 60 events of ~4 KB: ~240 KB, far under the slow-client limit (1 MiB)
# The fast lane's tests are skipped where the stock lane serves every server (make test-stock).
LANES = [pytest.param("fast", marks=fast_lane_only), "stock"]


async def lane_server(lane: str, redis_url: str, tmp_path: Path, **overrides: object) -> ServerUnderTest:
    """A server on ``lane``: the stock one whatever the installed versions, or the fast one."""
    if lane == "fast":
        return await start_server(redis_url, tmp_path, **overrides)
    srv = await start_server(redis_url, tmp_path, transport="stock", **overrides)
    assert isinstance(srv.app[SIO_KEY], StockSessionServer)
    return srv


async def handler_returned(srv: ServerUnderTest, port: int) -> None:
    """On the stock lane, wait (bounded) until the WebSocket of the client at ``port`` is no
    longer being served: Engine.IO's handler returned (it waited for its writer, stuck on a
    drain, for ever). The fast lane closes its WebSockets itself: nothing to wait for."""
    sio = srv.app[SIO_KEY]
    if not isinstance(sio, StockSessionServer):
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CUT_WITHIN_S
    while any(ws.transport.get_extra_info("peername")[1] == port for ws in sio.websockets.serving.values()):
        assert loop.time() < deadline, "its WebSocket's handler never returned"
        await asyncio.sleep(0.05)


async def subscribed(port: int, token: str, session_id: str) -> tuple[RawSocketIO, str]:
    """A raw WebSocket (4 KiB receive buffer) subscribed to ``session_id``, and its Socket.IO sid."""
    raw = await RawSocketIO.connect(port)
    await raw.receive_until("0{")
    raw.send('40{"token":"' + token + '"}')
    sid = json.loads((await raw.receive_until("40"))[2:])["sid"]
    raw.send('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
    await raw.receive_until("431")
    return raw, sid


def client_port(raw: RawSocketIO) -> int:
    """The raw client's own port. Read from what the transport noted when it connected: once the
    server resets the connection, the transport closes its socket, whose getsockname() then fails."""
    return int(raw.writer.get_extra_info("sockname")[1])


@dataclass(frozen=True, slots=True)
class RawSubscriber:
    """A server on a lane, and a raw WebSocket subscribed to one of its sessions."""

    srv: ServerUnderTest
    port: int
    session_id: str
    raw: RawSocketIO
    sid: str  # the raw WebSocket's Socket.IO sid


@asynccontextmanager
async def raw_subscriber(
    lane: str, redis_url: str, tmp_path: Path, **overrides: object
) -> AsyncIterator[RawSubscriber]:
    """A server on ``lane`` (``overrides``: its settings) and a raw WebSocket (4 KiB receive
    buffer) subscribed to alice's session on it; both closed afterwards."""
    srv = await lane_server(lane, redis_url, tmp_path, **overrides)
    try:
        port = port_of(srv.url)
        session_id = await srv.create_session("alice")
        raw, sid = await subscribed(port, srv.token("alice"), session_id)
        try:
            yield RawSubscriber(srv, port, session_id, raw, sid)
        finally:
            raw.writer.close()
    finally:
        await srv.stop()


@asynccontextmanager
async def events_sent(to: RawSubscriber) -> AsyncIterator[Client]:
    """:data:`EVENTS` events appended to ``to``'s session, once a reading client (yielded, closed
    afterwards) subscribed beside it got them all."""
    reader = Client(to.srv.url, to.srv.token("alice"))
    try:
        await reader.connect()
        await reader.call("subscribe_on_session", {"session_id": to.session_id})
        for _ in range(EVENTS):
            await to.srv.services.log.append(to.srv.services.scripts.append, to.session_id, "job_result", BLOB)
        await reader.wait_for(lambda: len(reader.named("job_result")) == EVENTS, timeout=20)
        yield reader
    finally:
        await reader.close()


@pytest.mark.parametrize("lane", LANES)
async def test_a_websocket_that_stops_reading_but_answers_pings_is_cut_at_the_write_deadline(
    lane: str, redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """It sends PONGs unasked, so the ping timeout cannot tell; what it holds stays under the
    slow-client limit, so that cannot either: it kept its subscription, and everything sent to
    it, for as long as it liked (on the stock lane, its queue and its connection too). Now: cut as
    a slow client once it took nothing for the deadline, its connection reset."""
    async with (
        raw_subscriber(
            lane, redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S, ping_interval_s=0.3, ping_timeout_s=2
        ) as stalled,
        events_sent(stalled) as reader,
    ):
        srv, port = stalled.srv, stalled.port
        bus = srv.app[BUS_KEY]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CUT_WITHIN_S
        while bus.sessions_of(stalled.sid):
            assert loop.time() < deadline, "the stalled WebSocket was never cut"
            stalled.raw.send("3")  # a PONG: it looks alive
            await asyncio.sleep(0.1)
        assert not await held_for(port, {client_port(stalled.raw)}, CUT_WITHIN_S), "its connection is still held"
        assert srv.app[WRITE_DEADLINE_KEY].cuts >= 1
        assert value(await scrape(srv), "sessionhub_connections_closed_total", reason="slow client") == 1
        await handler_returned(srv, client_port(stalled.raw))
        assert reader.sio.connected


@pytest.mark.parametrize("lane", LANES)
async def test_a_silent_websocket_closed_by_the_ping_timeout_leaves_nothing_behind(
    lane: str, redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """A phone in a tunnel: no PONG, so the ping timeout ends its session; but the close waited
    behind the unsent events (on the stock lane, Engine.IO's handler waited for its writer, or
    aiohttp for the client's close frame), and the kernel kept them (an orphan connection) for as
    long as the client kept its window shut. Now the connection is gone by the write deadline."""
    async with (
        raw_subscriber(
            lane, redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S, ping_interval_s=0.3, ping_timeout_s=0.5
        ) as silent,
        events_sent(silent) as reader,
    ):
        mine = {client_port(silent.raw)}
        assert sum(size for peer, size in server_side(silent.port) if peer in mine) > 0, "nothing waited for it"
        held = await held_for(silent.port, mine, 2.0 + CUT_WITHIN_S)  # the ping timeout, then the deadline
        assert not held, f"still held: {held}"
        assert not silent.srv.app[BUS_KEY].sessions_of(silent.sid)
        await handler_returned(silent.srv, client_port(silent.raw))
        assert reader.sio.connected


@pytest.mark.parametrize("lane", LANES)
async def test_a_slow_websocket_that_keeps_reading_gets_every_event(
    lane: str, redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Reading 2 KB every 50 ms (~40 KB/s, where loopback could give gigabytes) with a 0.5 s
    deadline: every event arrives, and nothing is cut."""
    async with (
        raw_subscriber(lane, redis_process.url, tmp_path, write_stall_timeout_s=0.5) as slow,
        events_sent(slow),
    ):
        got = 0
        loop = asyncio.get_running_loop()
        limit = loop.time() + 60
        while got < EVENTS:
            assert loop.time() < limit, f"{got} of {EVENTS} events after 60 s"
            text = await asyncio.wait_for(paced_receive(slow.raw), 10)
            if text.startswith('42["job_result"'):
                got += 1
            elif text == "2":
                slow.raw.send("3")
        assert slow.srv.app[WRITE_DEADLINE_KEY].cuts == 0


async def paced_receive(raw: RawSocketIO) -> str:
    """One server frame's text, read at most 2 KB every 50 ms."""
    header = await paced_exactly(raw, 2)
    size = header[1] & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await paced_exactly(raw, 2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await paced_exactly(raw, 8))
    return (await paced_exactly(raw, size)).decode()


async def paced_exactly(raw: RawSocketIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        step = min(2048, size - len(data))
        data += await raw.reader.readexactly(step)
        if step == 2048:
            await asyncio.sleep(0.05)
    return data
