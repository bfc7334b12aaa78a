"""Before authentication: sessions that never CONNECT, silent or trickling HTTP connections,
and too many connections from one address are all bounded (raw sockets, small settings)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import aiohttp

from server.app import SIO_KEY
from tests.conftest import start_server
from tests.helpers import Client
from tests.test_metrics import scrape, value
from tests.raw_wire import RawPoller, RawWebSocket, http_exchange, port_of

POLLING_OPEN = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def open_places(sio: Any) -> dict[str, int]:
    """Places taken per address, on either lane (each keeps its own count)."""
    counts: dict[str, int] = sio.places.open if sio.lane == "stock" else sio.eio._per_address
    return counts


async def wait_until_all_left(sio: Any) -> None:
    """Until the server has seen every client leave and given every place back."""
    deadline = asyncio.get_running_loop().time() + 5
    while sio.eio.sockets or open_places(sio):
        assert asyncio.get_running_loop().time() < deadline, (list(sio.eio.sockets), open_places(sio))
        await asyncio.sleep(0.02)


async def test_sessions_that_never_connect_are_closed(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, connect_timeout_s=0.5)
    port = port_of(srv.url)
    eio = srv.app[SIO_KEY].eio
    client = Client(srv.url, srv.token("alice"))
    silent: list[RawWebSocket] = []
    try:
        await client.connect()
        for _ in range(5):
            ws = await RawWebSocket.open(port)
            await ws.receive_until("0{")  # the Engine.IO OPEN, then nothing from the client
            silent.append(ws)
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, srv.url)
            refused = await RawWebSocket.open(port)
            refused.send('40{"token":"forged"}')
            await refused.receive_until("44")  # CONNECT_ERROR; the client lingers anyway
            silent.append(refused)
            assert len(eio.sockets) == 8
            for ws in silent:
                assert await ws.closed(3), "a session without CONNECT was kept open"
            assert (await poller.get())[0] in ("", "HTTP 400", "1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3
        while len(eio.sockets) > 1:
            assert loop.time() < deadline, list(eio.sockets)
            await asyncio.sleep(0.05)
        assert client.sio.connected  # the authenticated one is not touched
        assert (await client.call("no_such_event", {}))["error"] == "unknown_event"
    finally:
        for ws in silent:
            ws.close()
        await client.close()
        await srv.stop()


async def test_silent_and_trickling_http_connections_are_closed(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, http_idle_timeout_s=0.5)
    port = port_of(srv.url)
    try:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        trickling = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100

        async def trickle(writer: asyncio.StreamWriter) -> None:
            for byte in header:
                if writer.is_closing():
                    return
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        trickles = [asyncio.create_task(trickle(w)) for _, w in trickling]
        for reader, _ in silent + trickling:
            try:
                data = await asyncio.wait_for(reader.read(-1), 4)  # EOF: the server closed it
            except ConnectionResetError:  # or reset it, with our unread trickle in its buffer
                data = b""
            assert b"200" not in data
        for task in trickles:
            task.cancel()
        await asyncio.gather(*trickles, return_exceptions=True)
        for _, writer in silent + trickling:
            writer.close()
        status, _ = await http_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200
    finally:
        await srv.stop()


async def test_connections_per_address_are_capped(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, max_connections_per_address=3)
    port = port_of(srv.url)
    clients = [Client(srv.url, srv.token("alice")) for _ in range(3)]
    try:
        for client in clients:
            await client.connect()
        status, body = await http_exchange(port, POLLING_OPEN)
        assert status == 429 and json.loads(body)["error"] == "rate_limited"
        # When: by then every connection of the address that went silent (a crowd behind one NAT
        # whose network dropped) has been ended by the ping timeout; it said nothing before.
        eio = srv.app[SIO_KEY].eio  # type: ignore[attr-defined]
        assert json.loads(body)["retry_after_s"] == math.ceil(eio.ping_interval + eio.ping_timeout) > 0
        # An X-Forwarded-For is not trusted unless told (trust_forwarded_for): no way around the cap.
        forwarded = POLLING_OPEN.replace(b"Host: x", b"Host: x\r\nX-Forwarded-For: 10.0.0.9")
        assert (await http_exchange(port, forwarded))[0] == 429
        refused = value(await scrape(srv), "sessionhub_connections_refused_total", reason="per_address_limit")
        assert refused == 2
        status, _ = await http_exchange(
            port,
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        assert status == 429
        await clients[0].close()
        eio = srv.app[SIO_KEY].eio
        deadline = asyncio.get_running_loop().time() + 5
        while len(eio.sockets) > 2:  # the server has seen the disconnect
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        clients[0] = Client(srv.url, srv.token("alice"))
        await clients[0].connect()  # a freed place can be taken again
        assert all(c.sio.connected for c in clients)
        for client in clients:
            await client.close()
        await wait_until_all_left(srv.app[SIO_KEY])
    finally:
        for client in clients:
            await client.close()
        await srv.stop()


async def test_forwarded_addresses_are_capped_each_behind_a_trusted_proxy(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, max_connections_per_address=1, trust_forwarded_for=True)
    port = port_of(srv.url)
    polls = [
        POLLING_OPEN.replace(b"Host: x", b"Host: x\r\nX-Forwarded-For: " + hop) for hop in (b"10.0.0.1", b"10.0.0.2")
    ]
    try:
        assert [(await http_exchange(port, poll))[0] for poll in polls] == [200, 200]  # one place each
        assert [(await http_exchange(port, poll))[0] for poll in polls] == [429, 429]
        assert open_places(srv.app[SIO_KEY]) == {"10.0.0.1": 1, "10.0.0.2": 1}
    finally:
        await srv.stop()


async def test_hops_a_client_wrote_before_the_trusted_proxy_are_not_its_address(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    # A proxy that appends (nginx's $proxy_add_x_forwarded_for, HAProxy's own header line) passes
    # on what the client sent before the peer it saw: 10.0.0.7 here, whatever it claims first.
    srv = await start_server(redis_process.url, tmp_path, max_connections_per_address=1, trust_forwarded_for=True)
    port = port_of(srv.url)

    def poll(forwarded: bytes) -> bytes:
        return POLLING_OPEN.replace(b"Host: x", b"Host: x\r\n" + forwarded)

    def websocket(forwarded: bytes) -> bytes:  # a WebSocket open, answered by the fast lane's front
        return (
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n" + forwarded + b"\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )

    async def status_of(request: bytes) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            return int(head.split(b" ", 2)[1])
        finally:
            writer.close()

    try:
        assert await status_of(poll(b"X-Forwarded-For: 10.0.0.1, 10.0.0.7")) == 200  # 10.0.0.7's one place
        spoofed = [
            poll(b"X-Forwarded-For: 10.0.0.2, 10.0.0.7"),
            poll(b"X-Forwarded-For: 10.0.0.3\r\nX-Forwarded-For: 10.0.0.7"),  # the proxy's hop on a line of its own
            websocket(b"X-Forwarded-For: 10.0.0.4, 10.0.0.7"),
        ]
        assert [await status_of(request) for request in spoofed] == [429, 429, 429]
        assert open_places(srv.app[SIO_KEY]) == {"10.0.0.7": 1}
    finally:
        await srv.stop()


async def test_openings_that_fail_half_way_give_their_place_back(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    # The stock lane's Engine.IO opens the session (and counts it) before aiohttp checks the
    # WebSocket handshake; a refused handshake must not keep the place.
    srv = await start_server(redis_process.url, tmp_path, max_connections_per_address=2)
    port = port_of(srv.url)
    bad_open = (
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n"
    )
    clients = [Client(srv.url, srv.token("alice")) for _ in range(2)]
    try:
        for _ in range(4):
            assert (await http_exchange(port, bad_open))[0] == 400
        for client in clients:
            await client.connect()
        for client in clients:
            await client.close()
        await wait_until_all_left(srv.app[SIO_KEY])
    finally:
        for client in clients:
            await client.close()
        await srv.stop()


async def test_the_idle_timeout_spares_long_polls_and_websockets(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, http_idle_timeout_s=0.3, ping_interval_s=1.0)
    polling = Client(srv.url, srv.token("alice"))
    websocket = Client(srv.url, srv.token("alice"))
    try:
        await polling.connect(transports=["polling"])
        await websocket.connect()
        await asyncio.sleep(2.5)  # GETs held for a whole ping interval, WebSocket frames rarer than that
        for client in (polling, websocket):
            assert client.sio.connected
            assert (await client.call("no_such_event", {}))["error"] == "unknown_event"
    finally:
        await polling.close()
        await websocket.close()
        await srv.stop()
