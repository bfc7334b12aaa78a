"""Hostile long-polling POSTs: a body that is not an Engine.IO payload is refused, never dropped.

python-engineio's own POST handler swallows a body that is not UTF-8 (or holds too many packets),
answers 200 and drops the whole batch, good packets too: the client never learns its messages
were lost. Both lanes answer 400 and close the session, as a WebSocket closes with 1007 (the
fast lane in place of python-engineio's handler, the stock lane by reading and checking the body
before handing it to Engine.IO: server/transport/stock.py, StockSessionServer.post)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from server.transport import fastpath, stock
from server.transport.stock import POST_PACKETS_MAX

from server.app import SIO_KEY
from tests.helpers import OWNER, ServerUnderTest, serving_lane
from tests.raw_wire import RawPoller


async def _open(http: aiohttp.ClientSession, server: ServerUnderTest) -> str:
    """A long-polling session joined to namespace "/" with a valid token; its Engine.IO sid."""
    async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as response:
        sid = json.loads((await response.text())[1:])["sid"]
    connect = "40" + json.dumps({"token": server.token("alice")})
    async with http.post(f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}", data=connect) as response:
        assert response.status == 200
    async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}") as response:
        assert (await response.text()).startswith("40"), "the namespace was not joined"
    return sid


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'424["foo",{"a":"\xff"}]', id="not-utf8"),
        pytest.param(b'425["foo",{}]\x1e\xff', id="a-good-packet-then-not-utf8"),
        pytest.param(b"\x1e".join([b"6"] * (POST_PACKETS_MAX + 1)), id="too-many-packets"),
    ],
)
async def test_a_post_that_is_not_an_engineio_payload_is_a_400_and_ends_the_session(
    server: ServerUnderTest, body: bytes
) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _open(http, server)
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data=body) as response:
            assert response.status == 400, await response.text()
            assert (await response.json())["error"] == "invalid_payload"
        # The session is closed: its sid is unknown now (a JSON 400, as for any unknown session).
        async with http.get(url) as response:
            assert response.status == 400


async def test_a_good_batch_still_goes_through(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _open(http, server)
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data=b'421["no_such_event",{}]\x1e422["no_such_event",{}]') as response:
            assert response.status == 200
        async with http.get(url) as response:
            answers = (await response.text()).split("\x1e")
        assert [a[:3] for a in answers] == ["431", "432"], answers


async def test_a_large_batch_is_read_to_its_end(server: ServerUnderTest) -> None:
    # 900 KB arrives in many reads: a POST handler that takes one read() of the announced length
    # gets its first part, answers the packets in it and drops the rest unseen (each event here
    # is over the payload limit, so each must be answered payload_too_large; none may vanish).
    async with aiohttp.ClientSession() as http:
        sid = await _open(http, server)
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        packets = [f'42{n}["no_such_event",{{"pad":"{"é" * 150_000}"}}]' for n in (1, 2, 3)]
        async with http.post(url, data="\x1e".join(packets).encode()) as response:
            assert response.status == 200, await response.text()
        answers: list[str] = []
        while len(answers) < 3:
            async with http.get(url) as response:
                assert response.status == 200
                answers += [a for a in (await response.text()).split("\x1e") if a.startswith("43")]
        assert [a[:3] for a in answers] == ["431", "432", "433"], answers
        assert all('"payload_too_large"' in a for a in answers)


async def _chunked(*parts: bytes) -> AsyncIterator[bytes]:
    """A body aiohttp sends chunked (Transfer-Encoding: chunked, no Content-Length)."""
    for part in parts:
        yield part


async def test_a_chunked_batch_is_read_to_its_end(server: ServerUnderTest) -> None:
    # Read by its Content-Length, none, it was empty: answered 200, its packets dropped unseen.
    async with aiohttp.ClientSession() as http:
        sid = await _open(http, server)
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        body = _chunked(b'421["no_such_event",{}]', b'\x1e422["no_such_event",{}]')
        async with http.post(url, data=body) as response:
            assert response.status == 200
            assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        async with http.get(url) as response:
            answers = (await response.text()).split("\x1e")
        assert [a[:3] for a in answers] == ["431", "432"], answers


async def test_a_chunked_body_over_the_hard_limit_is_a_400_and_ends_the_session(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        sid = await _open(http, server)
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        body = _chunked(b"4", *[b"x" * (1 << 16)] * 17)  # 1 MiB and more
        async with http.post(url, data=body) as response:
            assert response.status == 400
        async with http.get(url) as response:
            assert response.status == 400  # the session is closed


async def test_a_body_that_stops_short_is_a_400_within_the_body_deadline(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A POST that announces more than it sends, then goes silent, must not hold its session: it
    # is answered 400 (the session ends) once every body's read deadline has passed.
    for lane in (fastpath, stock):
        monkeypatch.setattr(lane, "BODY_READ_TIMEOUT_S", 0.5)
    async with aiohttp.ClientSession() as http:
        sid = await _open(http, server)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
        )
        writer.write(head.encode() + b'421["no_such_event",{}]')
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.split()[1] == b"400", status
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.skipif(
    serving_lane() == "stock", reason="the stock lane's long-polls are python-engineio's own (a gap is possible there)"
)
async def test_a_long_poll_whose_connection_closed_ends_its_session_rather_than_lose_its_answer(
    server: ServerUnderTest,
) -> None:
    """A poll waiting when its client closes the connection was answered into the closed
    connection: a client that polled again in the same session went on without those events."""
    sio = server.app[SIO_KEY]
    async with aiohttp.ClientSession() as http:
        poller = await RawPoller.open(http, server.url)
        await poller.socketio(server.token("alice"))
        session_id = await server.create_session("alice")
        assert await poller.post(f'421["subscribe_on_session",{{"session_id":"{session_id}"}}]') == 200
        while not any(packet.startswith("431") for packet in await poller.get()):
            pass  # until the subscription's ack has come
        host, port = server.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            f"GET {urlsplit(poller.url).path}?{urlsplit(poller.url).query} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(10):
            while poller.eio_sid not in sio.eio._polling:  # the dead poll is waiting in the server
                await asyncio.sleep(0.01)
        writer.close()  # the client leaves it (its FIN)
        await server.services.voice.set_status(session_id, "recording", OWNER)  # answered to nobody
        async with asyncio.timeout(10):
            while poller.eio_sid in sio.eio.sockets:
                await asyncio.sleep(0.01)
        assert (await poller.get())[0] == "HTTP 400"  # its next poll finds the session ended
        del reader
