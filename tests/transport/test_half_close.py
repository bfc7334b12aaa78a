"""A client that sends its whole write and then shuts its sending side gets its answer.

``shutdown(SHUT_WR)`` after a request is how ``nc -N`` and some scripts and proxies say "that was
all": aiohttp closed the connection at that end of input, so a create was applied and its
answer never sent (the client could not tell it from a refusal, and a retry made a second).
``server.transport.front.HalfClosing`` keeps the connection open for writing while a write is
being handled, and closes it after the answer. A read, and a connection waiting for its next
request, are still closed at once: a client that closed the whole connection sends the same end
of input, and a long answer (an export) must stop for it
(``tests/listening/test_export_stream.py``).
"""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from tests.helpers import ServerUnderTest, fast_lane_only
from tests.raw_wire import port_of

pytestmark = fast_lane_only


async def _half_closed(port: int, request: bytes, *, timeout: float = 10) -> bytes:
    """Send ``request``, shut the sending side, and read everything until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.shutdown(socket.SHUT_WR)
        async with asyncio.timeout(timeout):
            return await reader.read(-1)  # until the server's end of the connection
    finally:
        writer.close()


def _create(name: str) -> bytes:
    body = json.dumps({"name": name}).encode()
    return (
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def test_a_request_followed_by_a_half_close_is_answered_then_closed(server: ServerUnderTest) -> None:
    answer = await _half_closed(port_of(server.url), _create("half-closed"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 "), answer[:200]
    created = json.loads(body)
    async with aiohttp.ClientSession() as http:  # what it answered is what was stored
        async with http.get(f"{server.url}/api/sessions/{created['id']}") as r:
            assert r.status == 200 and (await r.json())["name"] == "half-closed"


async def test_pipelined_requests_before_a_half_close_get_the_first_answer_and_an_end(
    server: ServerUnderTest,
) -> None:
    """The request being handled is answered; nothing after it is read (no answer to a request
    the client can no longer follow up, and no connection held for it)."""
    answer = await _half_closed(port_of(server.url), _create("first") + _create("second"))
    assert answer.startswith(b"HTTP/1.1 201 ") and answer.count(b"HTTP/1.1 ") == 1


async def test_a_half_close_while_waiting_for_the_next_request_closes_at_once(server: ServerUnderTest) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    try:
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200 ")
            writer.get_extra_info("socket").shutdown(socket.SHUT_WR)
            # Closed well before the 15 s keep-alive (the test's patience is 5 s).
            assert await asyncio.wait_for(reader.read(-1), 5) == b""
    finally:
        writer.close()
