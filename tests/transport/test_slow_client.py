"""A client that stops reading is cut loose; everyone else keeps receiving."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path
from typing import Any

import aiohttp

from server.app import BUS_KEY, SIO_KEY
from tests.test_metrics import scrape, until, value
from tests.conftest import start_server
from tests.helpers import Client, fast_lane_only
from tests.raw_wire import RawPoller, websocket_request


class RawSocketIO:
    """Just enough Engine.IO/Socket.IO over a raw WebSocket to subscribe and then go silent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawSocketIO:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        writer.write(websocket_request(port))
        await reader.readuntil(b"\r\n\r\n")
        return cls(reader, writer)

    def send(self, text: str) -> None:
        payload = text.encode()
        assert len(payload) < 65536
        if len(payload) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(payload))
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        self.writer.write(header + b"\0\0\0\0" + payload)  # masked with a zero key

    async def receive(self) -> str:
        _, second = await self.reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return (await self.reader.readexactly(size)).decode()

    async def receive_until(self, prefix: str) -> str:
        while not (text := await self.receive()).startswith(prefix):
            pass
        return text


# The stock lane cuts pollers by their backlog only (StockSessionServer.queued says why); a
# WebSocket that stops reading is cut there by the write deadline instead
# (tests/test_hostile_sockets_stalled_ws.py, each case on both lanes).
@fast_lane_only
async def test_a_client_that_does_not_read_is_disconnected(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, slow_client_buffer_bytes=65536)
    port = int(srv.url.rsplit(":", 1)[1])
    session_id = await srv.create_session("alice")
    reader_client = Client(srv.url, srv.token("alice"))
    slow = await RawSocketIO.connect(port)
    try:
        await slow.receive_until("0{")
        slow.send('40{"token":"' + srv.token("alice") + '"}')
        sid = json.loads((await slow.receive_until("40"))[2:])["sid"]
        slow.send('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
        await slow.receive_until("431")
        bus = srv.app[BUS_KEY]
        assert bus.sessions_of(sid) == {session_id}
        await reader_client.connect()
        await reader_client.call("subscribe_on_session", {"session_id": session_id})

        big = {"blob": "x" * 60_000}
        for _ in range(120):  # ~7 MB: more than the kernel buffers plus the 64 KiB allowance
            await srv.services.log.append(srv.services.scripts.append, session_id, "job_result", big)
            await asyncio.sleep(0)
        await reader_client.wait_for(lambda: len(reader_client.named("job_result")) == 120, timeout=20)
        deadline = asyncio.get_running_loop().time() + 10
        while bus.sessions_of(sid):
            assert asyncio.get_running_loop().time() < deadline, "the silent client was never cut"
            await asyncio.sleep(0.05)
        assert reader_client.sio.connected
        # Counted as what it was, not as a transport close.
        closed = "sessionhub_connections_closed_total"
        assert value(await scrape(srv), closed, reason="slow client") == 1
    finally:
        slow.writer.close()
        await reader_client.close()
        await srv.stop()


async def test_a_poller_that_stops_polling_is_disconnected(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    """It keeps sending pongs, so only the byte limit can tell that it takes nothing."""
    srv = await start_server(
        redis_process.url, tmp_path, slow_client_buffer_bytes=65536, ping_interval_s=0.3, ping_timeout_s=2
    )
    session_id = await srv.create_session("alice")
    bus = srv.app[BUS_KEY]
    async with aiohttp.ClientSession() as http:
        poller = await RawPoller.open(http, srv.url)
        sid = await poller.socketio(srv.token("alice"))
        await poller.post('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
        assert any(p.startswith("431") for p in await poller.get())
        assert bus.sessions_of(sid) == {session_id}
        eio_socket = srv.app[SIO_KEY].eio.sockets[poller.eio_sid]

        big = {"blob": "x" * 20_000}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 6  # three times the ping timeout: pongs keep it alive
        appended = 0
        while bus.sessions_of(sid):
            assert loop.time() < deadline, f"the poller was never cut ({appended} events of 20 KB queued)"
            if appended < 50:  # 1 MB at most; the poller never polls again
                await srv.services.log.append(srv.services.scripts.append, session_id, "job_result", big)
                appended += 1
            await poller.post("3")  # a pong: the client looks alive
            await asyncio.sleep(0.02)
        assert eio_socket.closed
        assert value(await scrape(srv), "sessionhub_connections_closed_total", reason="slow client") == 1
        if srv.app[SIO_KEY].lane == "fast":  # the stock lane's queue is python-engineio's: no byte count
            assert eio_socket.queue.pending_bytes() <= 65536
    await srv.stop()


def unsent_bytes(srv: Any) -> list[int]:
    """What the server holds for each open WebSocket, unsent (its transport's write buffer)."""
    sizes = []
    for eio_socket in srv.app[SIO_KEY].eio.sockets.values():
        transport = getattr(getattr(eio_socket, "sh_ws", None), "transport", None)
        transport = getattr(transport, "transport", transport)  # under a gathering wrapper
        if transport is not None and not transport.is_closing():
            sizes.append(transport.get_write_buffer_size())
    return sizes


@fast_lane_only
async def test_silent_clients_together_are_held_to_the_outbound_budget(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Each silent client stays under its own limit (8 MiB here), but together they would pin
    more than the server-wide budget (1 MiB): the ones holding the most are cut as slow
    clients until the rest fits, and a client that reads goes on receiving everything."""
    budget = 1 << 20
    srv = await start_server(
        redis_process.url, tmp_path, slow_client_buffer_bytes=8 << 20, outbound_budget_bytes=budget
    )
    port = int(srv.url.rsplit(":", 1)[1])
    session_id = await srv.create_session("alice")
    reader_client = Client(srv.url, srv.token("alice"))
    silent: list[RawSocketIO] = []
    try:
        for _ in range(4):
            slow = await RawSocketIO.connect(port)
            silent.append(slow)
            await slow.receive_until("0{")
            slow.send('40{"token":"' + srv.token("alice") + '"}')
            await slow.receive_until("40")
            slow.send('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
            await slow.receive_until("431")
        await reader_client.connect()
        await reader_client.call("subscribe_on_session", {"session_id": session_id})

        big = {"blob": "x" * 60_000}
        appended = 0
        # At most 120 events of 60 KB: 7.2 MB for each silent client, of which the kernel's
        # buffers take up to ~4 MB; the rest, ~3 MB each, is under the 8 MiB limit of one
        # client: only the budget cuts them.
        while appended < 120 and len(unsent_bytes(srv)) == 5:
            await srv.services.log.append(srv.services.scripts.append, session_id, "job_result", big)
            appended += 1
            await reader_client.wait_for(lambda n=appended: len(reader_client.named("job_result")) == n, timeout=20)
            # Counted connections stay within the budget; one not counted holds under 64 KiB.
            assert sum(size for size in unsent_bytes(srv) if size > 65536) <= budget
        assert len(unsent_bytes(srv)) < 5, "no silent client was cut"

        async def counted_as_slow() -> bool:
            return value(await scrape(srv), "sessionhub_connections_closed_total", reason="slow client") >= 1

        await until(counted_as_slow, timeout_s=10)
        assert reader_client.sio.connected
        assert sum(unsent_bytes(srv)) <= budget + 4 * 65536
    finally:
        for slow in silent:
            slow.writer.close()
        await reader_client.close()
        await srv.stop()


@fast_lane_only
async def test_pollers_that_stop_polling_count_in_the_outbound_budget(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """What waits for a long-polling client's next poll counts as a WebSocket's unsent bytes
    do: four pollers that never poll again, each under its own 8 MiB limit, are cut by the
    server-wide budget (1 MiB) once together they hold more."""
    budget = 1 << 20
    srv = await start_server(
        redis_process.url, tmp_path, slow_client_buffer_bytes=8 << 20, outbound_budget_bytes=budget
    )
    session_id = await srv.create_session("alice")
    eio = srv.app[SIO_KEY].eio
    reader_client = Client(srv.url, srv.token("alice"))
    try:
        async with aiohttp.ClientSession() as http:
            pollers = []
            for _ in range(4):
                poller = await RawPoller.open(http, srv.url)
                await poller.socketio(srv.token("alice"))
                await poller.post('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
                assert any(p.startswith("431") for p in await poller.get())
                pollers.append(poller)
            await reader_client.connect()
            await reader_client.call("subscribe_on_session", {"session_id": session_id})
            queues = [eio.sockets[poller.eio_sid].queue for poller in pollers]
            sockets = [eio.sockets[poller.eio_sid] for poller in pollers]

            big = {"blob": "x" * 60_000}
            appended = 0
            # 40 events of 60 KB: 2.4 MB for each poller, under its own limit; 9.6 MB together.
            while appended < 40 and not any(socket.closed for socket in sockets):
                await srv.services.log.append(srv.services.scripts.append, session_id, "job_result", big)
                appended += 1
                await reader_client.wait_for(lambda n=appended: len(reader_client.named("job_result")) == n, timeout=20)
                assert sum(queue.pending_bytes() for queue in queues) <= budget
            assert any(socket.closed for socket in sockets), "no poller was cut"

            async def counted_as_slow() -> bool:
                return value(await scrape(srv), "sessionhub_connections_closed_total", reason="slow client") >= 1

            await until(counted_as_slow, timeout_s=10)
            assert reader_client.sio.connected
    finally:
        await reader_client.close()
        await srv.stop()
