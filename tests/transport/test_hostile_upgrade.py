"""Upgrades from long-polling to WebSocket that never finish: each was answered 101 and waited
for its Engine.IO probe for ever, so one long-polling session -- one place in the per-address
cap -- held as many connections as its client opened, even after the session had ended (1,000
upgrades of one session stayed open 25 s after its connect deadline had closed it). Now one
upgrade of a session at a time, closed unless its probe exchange is done by the connect
deadline; on both lanes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import aiohttp

from server.app import SIO_KEY
from tests.conftest import start_server
from tests.helpers import ServerUnderTest, fast_lane_only
from tests.raw_wire import RawWebSocket, port_of


async def _polling_session(http: aiohttp.ClientSession, server: ServerUnderTest, *, join: bool) -> str:
    """A long-polling session (joined to namespace "/" when ``join``); its Engine.IO sid."""
    async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as response:
        sid: str = json.loads((await response.text())[1:])["sid"]
    if join:
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data="40" + json.dumps({"token": server.token("alice")})) as response:
            assert response.status == 200
        async with http.get(url) as response:
            assert (await response.text()).startswith("40"), "the namespace was not joined"
    return sid


async def _upgrade(server: ServerUnderTest, sid: str, transport: str = "websocket") -> tuple[int, RawWebSocket]:
    """Send an upgrade request for ``sid`` (``transport`` in its query: Engine.IO goes by the
    headers); its status and the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /socket.io/?EIO=4&transport={transport}&sid={sid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return int(head.split(b" ", 2)[1]), RawWebSocket(reader, writer)


async def test_a_second_upgrade_while_one_is_under_way_is_refused(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _polling_session(http, server, join=True)
        status, first = await _upgrade(server, sid)
        opened: list[RawWebSocket] = [first]
        try:
            assert status == 101
            for transport in ("websocket", "polling", "websocket"):
                status, other = await _upgrade(server, sid, transport)
                opened.append(other)
                assert status == 400, "a second upgrade of one session was let in"
            # The first goes on as any upgrade does, and the session with it.
            first.send("2probe")
            assert await first.receive_until("3probe") == "3probe"
            first.send("5")
            first.send('421["no_such_event",{}]')
            assert (await first.ack(1))["error"] == "unknown_event"
        finally:
            for ws in opened:
                ws.close()


async def test_an_upgrade_that_never_probes_is_closed_by_the_connect_deadline(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, connect_timeout_s=0.5)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(5):  # a machine slow enough to miss the session's own deadline tries again
                sid = await _polling_session(http, srv, join=False)  # ended by the deadline too
                status, silent = await _upgrade(srv, sid)
                if status == 101:
                    break
                silent.close()
            try:
                assert status == 101
                assert await silent.closed(10), "an upgrade that never sent its probe was held open"
            finally:
                silent.close()
    finally:
        await srv.stop()


async def _poll(server: ServerUnderTest, sid: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    writer.write(f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return reader, writer


async def test_a_second_long_poll_while_one_waits_is_refused(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _polling_session(http, server, join=True)
        polls = [await _poll(server, sid) for _ in range(2)]  # nothing to send yet: one waits
        heads = [asyncio.ensure_future(reader.readuntil(b"\r\n\r\n")) for reader, _ in polls]
        try:
            done, _ = await asyncio.wait(heads, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            assert done, "two long-polls of one session were both held"
            refused = heads.index(done.pop())
            assert heads[refused].result().startswith(b"HTTP/1.1 400 "), heads[refused].result()
            # The one that waits is answered as ever: here with an event's ack.
            url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
            async with http.post(url, data='421["no_such_event",{}]') as response:
                assert response.status == 200
            held = heads[1 - refused]
            assert (await asyncio.wait_for(held, 10)).startswith(b"HTTP/1.1 200 ")
        finally:
            for head in heads:
                head.cancel()
            for _, writer in polls:
                writer.close()


async def test_a_second_post_while_one_is_read_is_refused(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _polling_session(http, server, join=True)
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        # A POST whose body has not all arrived: it is being read (up to 1 MiB held meanwhile).
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
        body = b'421["no_such_event",{}]'
        head = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body[:5])
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while True:  # until the server reads it: from then on another POST is refused
                async with http.post(url, data="6") as response:
                    if response.status == 400:
                        assert (await response.json())["error"] == "invalid_payload"
                        break
                    assert response.status == 200
                assert asyncio.get_running_loop().time() < deadline, "a second POST was read beside the first"
            # The first is read to its end and handled as ever: its event's ack comes.
            writer.write(body[5:])
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            async with http.get(url) as response:
                assert "unknown_event" in await response.text()
        finally:
            writer.close()


@fast_lane_only
async def test_unfinished_post_bodies_count_in_the_partial_frames_budget(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    # Each long-polling session may hold up to 1 MiB of an unfinished body: 2,000 sessions of one
    # address held 2 GB, outside the budget that bounds what unfinished WebSocket messages hold.
    srv = await start_server(redis_process.url, tmp_path, partial_frames_budget_bytes=1 << 20)
    budget = srv.app[SIO_KEY].eio.partial_frames
    writers: list[asyncio.StreamWriter] = []

    async def trickle(sid: str, sent: int) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv.url))
        writers.append(writer)
        head = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n"
        )
        writer.write(head.encode() + b"4" + b"a" * (sent - 1))  # a message, unfinished
        return reader

    try:
        async with aiohttp.ClientSession() as http:
            first, second, third = [await _polling_session(http, srv, join=True) for _ in range(3)]
            await trickle(first, 900_000)
            deadline = asyncio.get_running_loop().time() + 10
            while budget.held < 900_000:  # until the server holds it all
                assert asyncio.get_running_loop().time() < deadline, budget.held
                await asyncio.sleep(0.01)
            refused = await trickle(second, 200_000)  # past the 1 MiB budget: refused, session ended
            answer = await asyncio.wait_for(refused.readuntil(b"\r\n\r\n"), 10)
            assert answer.startswith(b"HTTP/1.1 400 "), answer
            while await asyncio.wait_for(refused.read(65536), 10):  # closed once the server lingered
                pass
            url = f"{srv.url}/socket.io/?EIO=4&transport=polling&sid={third}"
            async with http.post(url, data='421["no_such_event",{}]') as response:  # whole: never counted
                assert response.status == 200
            for writer in writers:
                writer.close()
            while budget.held:  # the first body's read ends with its connection: its bytes given back
                assert asyncio.get_running_loop().time() < deadline + 10, budget.held
                await asyncio.sleep(0.01)
    finally:
        for writer in writers:
            writer.close()
        await srv.stop()
