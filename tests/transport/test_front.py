"""server.transport.front: WebSocket opens answered before aiohttp, and everything else handed to it intact.

The parser is held to what it may take (one plain, complete Engine.IO v4 WebSocket open); the
live tests check that such an open really skips aiohttp, that anything else is answered by
aiohttp exactly as before (split requests, pipelined frames, odd headers, refused origins),
that the per-address cap cannot be overshot by opens that arrive together, and that the
front's own timer closes a connection that never sends its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from server.app import SIO_KEY
from server.transport.front import MAX_EARLY_BYTES, parse_upgrade
from tests.test_metrics import scrape, value
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest, fast_lane_only
from tests.admin.test_http import admin_token
from tests.raw_wire import client_frame, http_exchange, port_of

pytestmark = fast_lane_only

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(hashlib.sha1(KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
PATH = "/socket.io/"


def open_request(target: str = "/socket.io/?EIO=4&transport=websocket", *, extra: str = "", host: str = "x") -> bytes:
    """A WebSocket open as a browser sends it; ``extra`` adds raw header lines."""
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def test_a_plain_open_is_taken_with_its_accept_key_and_environ() -> None:
    request = parse_upgrade(
        open_request(
            "/socket.io/?EIO=4&transport=websocket&t=abc", extra="Origin: http://x\r\nX-Forwarded-Proto: https\r\n"
        ),
        PATH,
        "10.0.0.7",
    )
    assert request is not None
    assert request.accept == ACCEPT and request.peer == "10.0.0.7"
    environ = request.environ(1)  # behind one trusted proxy
    assert environ["QUERY_STRING"] == "EIO=4&transport=websocket&t=abc"
    assert environ["HTTP_ORIGIN"] == "http://x" and environ["HTTP_UPGRADE"] == "websocket"
    assert environ["wsgi.url_scheme"] == "https" and environ["REMOTE_ADDR"] == "10.0.0.7"
    assert request.environ()["wsgi.url_scheme"] == "http"  # no trusted proxy: the header is ignored
    assert environ["PATH_INFO"] == PATH


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(open_request()[:-2], id="incomplete"),
        pytest.param(open_request() + client_frame(0x1, b"40"), id="bytes-after-the-request"),
        pytest.param(open_request("/socket.io/?EIO=4&transport=polling"), id="polling"),
        pytest.param(open_request("/socket.io/?EIO=3&transport=websocket"), id="engine.io-3"),
        pytest.param(open_request("/socket.io/?transport=websocket"), id="no-version"),
        pytest.param(open_request("/socket.io/?EIO=4&transport=websocket&sid=abc"), id="upgrade-of-a-session"),
        pytest.param(open_request("/socket.io/?EIO=4&transport=websocket&EIO=4"), id="repeated-parameter"),
        pytest.param(open_request("/socket.io/?EIO=4&transport=websocket&j=1"), id="jsonp"),
        pytest.param(open_request("/socket.io?EIO=4&transport=websocket"), id="other-path"),
        pytest.param(open_request("/socket.io/x?EIO=4&transport=websocket"), id="sub-path"),
        pytest.param(open_request("/%73ocket.io/?EIO=4&transport=websocket"), id="escaped-path"),
        pytest.param(open_request().replace(b"GET ", b"POST "), id="post"),
        pytest.param(open_request().replace(b"HTTP/1.1", b"HTTP/1.0"), id="http-1.0"),
        pytest.param(open_request().replace(b"Host: x\r\n", b""), id="no-host"),
        pytest.param(open_request(extra="Host: y\r\n"), id="two-hosts"),
        pytest.param(open_request(extra="upgrade: websocket\r\n"), id="repeated-upgrade-other-case"),
        pytest.param(open_request(extra="Origin: http://a\r\nOrigin: http://b\r\n"), id="two-origins"),
        pytest.param(open_request(extra="X-A: 1\r\n folded\r\n"), id="folded-header"),
        pytest.param(open_request(extra="X A: 1\r\n"), id="space-in-name"),
        pytest.param(open_request(extra="X-A 1\r\n"), id="no-colon"),
        pytest.param(open_request(extra="Content-Length: 0\r\n"), id="content-length"),
        pytest.param(open_request(extra="Transfer-Encoding: chunked\r\n"), id="chunked"),
        pytest.param(open_request(extra="X-A: caf\u00e9\r\n"), id="not-ascii"),
        pytest.param(open_request(extra="X-A: a\x00b\r\n"), id="control-character"),
        pytest.param(open_request().replace(b"\r\nUpgrade", b"\nUpgrade"), id="bare-newline"),
        pytest.param(open_request().replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c"), id="upgrade-list"),
        pytest.param(
            open_request().replace(b"Connection: Upgrade", b"Connection: keep-alive"), id="no-connection-upgrade"
        ),
        pytest.param(open_request().replace(b"Version: 13", b"Version: 8"), id="websocket-version"),
        pytest.param(open_request().replace(KEY.encode(), b"c2hvcnQ="), id="short-key"),
        pytest.param(open_request().replace(KEY.encode(), b"not base64!"), id="bad-key"),
        pytest.param(open_request(extra="X-Big: " + "a" * 9000 + "\r\n"), id="over-the-size-cap"),
        pytest.param(open_request(extra="".join(f"X-{i}: 1\r\n" for i in range(70))), id="too-many-headers"),
        pytest.param(b"\r\n\r\n", id="empty"),
    ],
)
def test_anything_else_is_left_to_aiohttp(data: bytes) -> None:
    assert parse_upgrade(data, PATH, "127.0.0.1") is None


def test_header_names_are_case_insensitive_and_lists_of_connection_tokens_count() -> None:
    data = (
        open_request()
        .replace(b"Upgrade: websocket", b"UPGRADE: WebSocket")
        .replace(b"Connection: Upgrade", b"connection: keep-alive, Upgrade")
    )
    assert parse_upgrade(data, PATH, "") is not None


def _handled(srv: ServerUnderTest) -> int:
    """Requests aiohttp has handled so far."""
    http = srv.runner.server
    assert http is not None
    return http.requests_count


async def _open(port: int, data: bytes | list[bytes]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Send ``data`` (a list: separate writes, 50 ms apart); the answer's head and first frame bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in [data] if isinstance(data, bytes) else data:
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.05)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def _engineio_open(reader: asyncio.StreamReader) -> dict[str, Any]:
    first = await asyncio.wait_for(reader.readexactly(2), 5)
    size = first[1] & 0x7F
    payload = await asyncio.wait_for(reader.readexactly(size), 5)
    assert payload.startswith(b"0")
    return dict(json.loads(payload[1:]))


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([open_request()], id="one-write"),
        # Read whole by the front under its idle timer (it went to aiohttp, whose own timer then
        # started again: a head trickled after 14 s of silence had 30 s in all).
        pytest.param([open_request()[:40], open_request()[40:]], id="split-over-two-writes"),
        pytest.param([open_request()[:1], open_request()[1:-2], open_request()[-2:]], id="split-over-three-writes"),
    ],
)
async def test_a_websocket_open_skips_aiohttp_and_is_counted_as_before(
    server: ServerUnderTest, parts: list[bytes]
) -> None:
    port = port_of(server.url)
    metrics_before = await _opens_counted(server)
    handled = _handled(server)
    reader, writer, head = await _open(port, parts)
    try:
        assert head.startswith(b"HTTP/1.1 101 ") and f"Sec-WebSocket-Accept: {ACCEPT}".encode() in head
        opened = await _engineio_open(reader)
        assert opened["sid"] in server.app[SIO_KEY].eio.sockets
        writer.write(client_frame(0x1, b'40{"token":"' + server.token("alice").encode() + b'"}'))
        first = await asyncio.wait_for(reader.readexactly(2), 5)
        assert (await reader.readexactly(first[1] & 0x7F)).startswith(b"40")
        assert _handled(server) == handled  # aiohttp never saw it
        assert await _opens_counted(server) == metrics_before + 1
    finally:
        writer.close()


async def _opens_counted(srv: ServerUnderTest) -> float:
    """``sessionhub_http_requests_total`` of WebSocket opens (route /socket.io/, status 101)."""
    request = (
        f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin_token(srv)}\r\nConnection: close\r\n\r\n"
    )
    status, body = await http_exchange(port_of(srv.url), request.encode())
    assert status == 200
    for line in body.decode().splitlines():
        if (
            line.startswith("sessionhub_http_requests_total{")
            and 'route="/socket.io/"' in line
            and 'status="101"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([open_request(extra="X-A: 1\r\nX-A: 2\r\n")], id="repeated-header"),
        pytest.param([open_request() + client_frame(0x1, b"40")], id="frame-sent-with-the-request"),
    ],
)
async def test_what_the_front_leaves_is_opened_by_aiohttp_as_before(
    server: ServerUnderTest, parts: list[bytes]
) -> None:
    handled = _handled(server)
    reader, writer, head = await _open(port_of(server.url), parts)
    try:
        assert head.startswith(b"HTTP/1.1 101 ") and f"Sec-WebSocket-Accept: {ACCEPT}".encode() in head
        await _engineio_open(reader)
        assert _handled(server) == handled + 1
        if len(parts) == 1 and parts[0].endswith(client_frame(0x1, b"40")):  # the frame was not lost
            first = await asyncio.wait_for(reader.readexactly(2), 5)
            assert (await reader.readexactly(first[1] & 0x7F)).startswith(b"44")  # no token: refused
    finally:
        writer.close()


async def test_refusals_still_come_from_the_normal_path(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, max_connections_per_address=2)
    port = port_of(srv.url)
    try:
        status, body = await http_exchange(port, open_request(extra="Origin: http://elsewhere.example\r\n"))
        assert status == 400 and b"not an accepted origin" in body
        status, body = await http_exchange(port, b"GARBAGE\r\n\r\n")
        assert status == 400
        # Opens that arrive together, all read in one loop step: the cap holds exactly.
        opens = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
        for _, writer in opens:
            writer.write(open_request())
        statuses = []
        for reader, _ in opens:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            statuses.append(int(head.split(b" ", 2)[1]))
        assert sorted(statuses) == [101, 101, 429, 429, 429, 429]
        refused = value(await scrape(srv), "sessionhub_connections_refused_total", reason="per_address_limit")
        assert refused == 4
        for _, writer in opens:
            writer.close()
        eio = srv.app[SIO_KEY].eio
        deadline = asyncio.get_running_loop().time() + 5
        while eio.sockets or eio._per_address:  # every place is given back
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        client = Client(srv.url, srv.token("alice"))
        await client.connect()
        await client.close()
    finally:
        await srv.stop()


async def test_a_connection_that_sends_nothing_is_closed_by_the_front(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, http_idle_timeout_s=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv.url))
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(reader.read(-1), 5) == b""
        assert asyncio.get_running_loop().time() - started < 3
        writer.close()
    finally:
        await srv.stop()


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(b"", id="nothing-first"),
        pytest.param(b"GET /api/health HTTP/1.1\r\n", id="a-line-first"),
    ],
)
async def test_a_head_trickled_in_is_closed_at_the_idle_timeout_from_the_connection(
    redis_process: Any, redis: Any, tmp_path: Path, start: bytes
) -> None:
    """Silence, then a head a byte at a time: closed at the idle timeout counted from the
    connection, not from its first byte (aiohttp's own timer started again there, twice the
    timeout in all)."""
    srv = await start_server(redis_process.url, tmp_path, http_idle_timeout_s=1.0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv.url))
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(start)
        closed = asyncio.ensure_future(reader.read(-1))
        await asyncio.wait({closed}, timeout=0.8)  # most of the timeout spent in silence
        for byte in b"GET /api/health HTTP/1.1\r\nHost: x\r\n":
            if closed.done():
                break
            with contextlib.suppress(ConnectionError):
                writer.write(bytes([byte]))
            await asyncio.wait({closed}, timeout=0.1)
        try:
            answer = await asyncio.wait_for(closed, 5)
        except ConnectionResetError:
            # A byte sent as the server closed is still unread there, and the kernel resets the
            # connection instead of closing it: closed too, and with nothing sent back.
            answer = b""
        assert answer == b""  # closed, with no answer
        assert loop.time() - started < 1.6
        writer.close()
    finally:
        await srv.stop()


async def test_what_is_no_http_request_is_answered_at_once(server: ServerUnderTest) -> None:
    """A TLS hello on the plain port, or a first line that is no request line, is not waited on
    for a whole head: aiohttp answers it 400 at once, as before."""
    for data in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"GET / HTTP/9.9\r\nHost"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
        writer.write(data)
        try:
            head = await asyncio.wait_for(reader.read(4096), 5)
        finally:
            writer.close()
        assert re.match(rb"HTTP/1\.[01] 400 ", head), head


async def test_connections_that_sent_nothing_are_closed_when_the_server_stops(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, http_idle_timeout_s=60)
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port_of(srv.url)) for _ in range(3)]
        await asyncio.sleep(0.1)  # accepted
    finally:
        await srv.stop()
    for reader, writer in idle:
        assert await asyncio.wait_for(reader.read(-1), 5) == b""
        writer.close()


async def test_a_session_refused_after_the_front_took_the_connection_gets_a_whole_answer(
    server: ServerUnderTest,
) -> None:
    # No Engine.IO connect handler refuses today; one that fails is a refusal (Engine.IO logs it
    # and answers 401), and the fast path, with no aiohttp response to hand it to, writes it.
    eio = server.app[SIO_KEY].eio
    served = eio.handlers["connect"]

    async def failing(sid: str, environ: dict[str, Any]) -> None:
        raise RuntimeError("refused by the test")

    eio.handlers["connect"] = failing
    try:
        status, body = await http_exchange(port_of(server.url), open_request())
    finally:
        eio.handlers["connect"] = served
    assert status == 401 and json.loads(body) == "Unauthorized"
    assert not eio.sockets and not eio._per_address  # nothing kept, the place given back
    client = Client(server.url, server.token("alice"))
    await client.connect()
    await client.close()


async def test_bytes_sent_before_the_answer_reach_the_session_and_are_capped(server: ServerUnderTest) -> None:
    # A slow connect step (a Redis-bound handler would be one) leaves the front holding the
    # connection for a while; what the client sends meanwhile is kept for it, up to a cap.
    eio = server.app[SIO_KEY].eio
    served = eio.handlers["connect"]

    async def slow(sid: str, environ: dict[str, Any]) -> Any:
        await asyncio.sleep(0.3)
        return await served(sid, environ)

    eio.handlers["connect"] = slow
    port = port_of(server.url)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(open_request())
        await asyncio.sleep(0.1)  # taken by the front, its connect step still sleeping
        writer.write(client_frame(0x1, b'40{"token":"' + server.token("alice").encode() + b'"}'))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 ")
        await _engineio_open(reader)
        first = await asyncio.wait_for(reader.readexactly(2), 5)
        assert (await reader.readexactly(first[1] & 0x7F)).startswith(b"40{")  # the early CONNECT
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(open_request())
        await asyncio.sleep(0.1)
        writer.write(b"x" * (MAX_EARLY_BYTES + 1))
        try:
            answer = await asyncio.wait_for(reader.read(-1), 5)
        except ConnectionResetError:  # the cut, seen as a reset
            answer = b""
        assert answer == b""  # cut, never answered
        writer.close()
    finally:
        eio.handlers["connect"] = served
