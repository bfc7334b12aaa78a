"""The write deadline on the stock lane's own ways of holding a WebSocket or a poll
(server/transport/stock_deadline.py): bytes piling up in the process between pings, a writer
stuck on a burst, a poll's answer not read. The stalled-WebSocket cases both lanes share run on
both in tests/test_hostile_sockets_stalled_ws.py. Raw sockets with a 4 KiB receive buffer, a
server that runs the stock lane whatever the installed versions, and the server's side of each
connection as the kernel has it."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from handlers.write_deadline import WRITE_DEADLINE_KEY, WriteDeadline
from server.app import BUS_KEY, SIO_KEY
from server.transport.contract import Packet
from server.transport.stock import StockSessionServer
from tests.helpers import ServerUnderTest
from tests.raw_wire import RawPoller, port_of, websocket_request
from tests.test_hostile_sockets_slow_http import stalled_reader
from tests.test_hostile_sockets_stalled_http import held_for, server_side
from tests.test_hostile_sockets_stalled_ws import (
    CUT_WITHIN_S,
    DEADLINE_S,
    client_port,
    handler_returned,
    lane_server,
    raw_subscriber,
)
from tests.test_metrics import scrape, value
from tests.transport.test_slow_client import RawSocketIO

BIG = {"blob": "x" * 16000}  # an event of ~16 KB
BURST = 400  # ~6.4 MB at once: more than the kernel's send queue takes (tcp_wmem's most, 4 MiB)


async def stock_server(redis_url: str, tmp_path: Path, **overrides: object) -> ServerUnderTest:
    return await lane_server("stock", redis_url, tmp_path, **overrides)


def stock_sio(srv: ServerUnderTest) -> StockSessionServer:
    sio = srv.app[SIO_KEY]
    assert isinstance(sio, StockSessionServer)
    return sio


def held_in_process(sio: StockSessionServer, port: int) -> int:
    """Bytes asyncio holds for the client at ``port`` (the kernel's send queue being full)."""
    return sum(
        ws.transport.get_write_buffer_size()  # type: ignore[attr-defined]
        for ws in sio.websockets.serving.values()
        if ws.transport.get_extra_info("peername")[1] == port
    )


async def test_a_stock_websocket_that_stops_reading_between_pings_is_cut_once_its_bytes_pile_up(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Pings 20 s apart: the look once a ping interval comes too late. Events keep coming and the
    kernel's send queue is full: the bytes piling up in the process are what tells, and the
    WebSocket is cut at the deadline, not a ping interval later."""
    async with raw_subscriber(
        "stock", redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S, ping_interval_s=20, ping_timeout_s=20
    ) as stalled:
        srv, port, sio = stalled.srv, stalled.port, stock_sio(stalled.srv)
        outlet = sio.outlet(stalled.sid)
        assert outlet is not None
        loop = asyncio.get_running_loop()
        limit = loop.time() + CUT_WITHIN_S
        sent = 0
        while srv.app[BUS_KEY].sessions_of(stalled.sid):
            assert loop.time() < limit, (
                f"never cut ({sent} events sent, {held_in_process(sio, client_port(stalled.raw))} bytes held)"
            )
            outlet.send(Packet("job_result", json.dumps(BIG)))
            sent += 1
            await asyncio.sleep(0.01)  # the writer writes what it can between events
        assert not await held_for(port, {client_port(stalled.raw)}, CUT_WITHIN_S), "its connection is still held"
        scraped = await scrape(srv)
        # Every reason counted, should another have been (seen once, on a machine loaded past its cores).
        closed = {labels: n for (name, labels), n in scraped.items() if name == "sessionhub_connections_closed_total"}
        assert value(scraped, "sessionhub_connections_closed_total", reason="slow client") == 1, (closed, sent)
        await handler_returned(srv, client_port(stalled.raw))


@pytest.mark.parametrize("held_s", [2.0, 3.2])
async def test_a_loop_held_past_the_kernels_timeout_still_says_slow_client(
    redis_process: Any, redis: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held_s: float
) -> None:
    """CI, on a machine loaded past its cores: the deadline arms the kernel's write timeout, which
    counts from the kernel's first probe into the shut window (long before the watch began: the
    4 MiB send queue filled first), so with the loop held the kernel ended the connection before
    the deadline's own cut, and it was reported "transport close", no slow client, no cut. The
    loop is held here as that machine held it, once, from 0.3 s after the WebSocket is watched."""
    watch = WriteDeadline.watch

    def held_once(self: WriteDeadline, transport: Any, on_stall: Any = None) -> None:
        if on_stall is not None and not self.watched:
            asyncio.get_running_loop().call_later(0.3, time.sleep, held_s)
        watch(self, transport, on_stall)

    monkeypatch.setattr(WriteDeadline, "watch", held_once)
    await test_a_stock_websocket_that_stops_reading_between_pings_is_cut_once_its_bytes_pile_up(
        redis_process, redis, tmp_path
    )


async def test_a_silent_stock_websocket_whose_writer_waits_on_a_burst_is_freed_when_its_session_ends(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """A catch-up burst queued at once, more than the kernel takes, then silence: Engine.IO's
    writer waits for a drain that never comes. The ping timeout ends the session, but its
    handler waited for that writer, holding the connection, for ever; now the end of the
    session puts what is left under the deadline."""
    async with raw_subscriber(
        "stock", redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S, ping_interval_s=0.3, ping_timeout_s=0.5
    ) as silent:
        srv, port, sio = silent.srv, silent.port, stock_sio(silent.srv)
        assert await asyncio.wait_for(silent.raw.receive_until("2"), 5) == "2"  # the first PING: none after it
        outlet = sio.outlet(silent.sid)
        assert outlet is not None
        packets = [Packet("job_result", json.dumps(BIG)) for _ in range(BURST)]
        outlet.send_batch(packets, b"".join(packet.frame for packet in packets))
        loop = asyncio.get_running_loop()
        limit = loop.time() + CUT_WITHIN_S
        while not held_in_process(sio, client_port(silent.raw)):
            assert loop.time() < limit, "the kernel took the whole burst"
            await asyncio.sleep(0.02)
        held = await held_for(port, {client_port(silent.raw)}, 2.0 + CUT_WITHIN_S)  # the ping timeout, the deadline
        assert not held, f"still held: {held}"
        assert not srv.app[BUS_KEY].sessions_of(silent.sid)
        await handler_returned(srv, client_port(silent.raw))


async def test_a_stock_poll_whose_answer_is_not_read_is_reset_at_the_write_deadline(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Long-polling: a poll's answer is an HTTP answer, under the deadline as every other
    (handlers.paced_bodies watches it on both lanes). A poller that takes the first byte of an
    ~800 KB poll (under the 1 MiB slow-client limit) and no more is reset at the deadline, well
    before its session's ping timeout."""
    srv = await stock_server(
        redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S, ping_interval_s=20, ping_timeout_s=20
    )
    port = port_of(srv.url)
    sio = srv.app[SIO_KEY]
    reader: socket.socket | None = None
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, srv.url)
            sid = await poller.socketio(srv.token("alice"))
        outlet = sio.outlet(sid)
        assert outlet is not None
        packets = [Packet("job_result", json.dumps(BIG)) for _ in range(50)]
        outlet.send_batch(packets, b"".join(packet.frame for packet in packets))
        reader = await stalled_reader(port, poller.url.removeprefix(srv.url))
        mine = {reader.getsockname()[1]}
        assert sum(size for peer, size in server_side(port) if peer in mine) > 0, "nothing waited for it"
        held = await held_for(port, mine, CUT_WITHIN_S)
        assert not held, f"still held: {held}"
        assert srv.app[WRITE_DEADLINE_KEY].cuts >= 1
    finally:
        if reader is not None:
            reader.close()
        await srv.stop()


async def test_a_stock_websocket_stays_watched_when_its_own_session_is_asked_to_upgrade(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """A session opened as a WebSocket is not marked as upgrading (only a poller's upgrade is), so
    an upgrade request naming its sid reached WebSocketDeadlines.began, which put the new request's
    connection in the WebSocket's place, and its return took that place away: the real WebSocket
    was no longer watched. Its own client (it knows its sid) could so stop reading, send PONGs
    unasked and keep its subscription, its queue and its connection for good. Now the WebSocket
    being served keeps its place, and is cut at the deadline as any other."""
    srv = await stock_server(
        redis_process.url, tmp_path, write_stall_timeout_s=DEADLINE_S, ping_interval_s=0.3, ping_timeout_s=2
    )
    port = port_of(srv.url)
    session_id = await srv.create_session("alice")
    sio = stock_sio(srv)
    stalled = await RawSocketIO.connect(port)
    try:
        eio_sid = json.loads((await stalled.receive_until("0{"))[1:])["sid"]
        stalled.send('40{"token":"' + srv.token("alice") + '"}')
        sid = json.loads((await stalled.receive_until("40"))[2:])["sid"]
        stalled.send('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
        await stalled.receive_until("431")
        served = sio.websockets.serving[eio_sid].transport
        # Its own client asks to upgrade its session on another connection: refused, and gone.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(websocket_request(port, sid=eio_sid))
        await asyncio.wait_for(reader.read(65536), 5)  # its answer: the request has returned
        writer.close()
        assert eio_sid in sio.websockets.serving, "the WebSocket being served lost its place"
        assert sio.websockets.serving[eio_sid].transport is served
        outlet = sio.outlet(sid)
        assert outlet is not None
        loop = asyncio.get_running_loop()
        limit = loop.time() + CUT_WITHIN_S
        sent = 0
        while srv.app[BUS_KEY].sessions_of(sid):
            assert loop.time() < limit, f"never cut ({sent} events sent)"
            stalled.send("3")  # a PONG: it looks alive
            outlet.send(Packet("job_result", json.dumps(BIG)))
            sent += 1
            await asyncio.sleep(0.02)
        assert not await held_for(port, {client_port(stalled)}, CUT_WITHIN_S), "its connection is still held"
        await handler_returned(srv, client_port(stalled))
    finally:
        stalled.writer.close()
        await srv.stop()
