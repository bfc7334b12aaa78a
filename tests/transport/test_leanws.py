"""The lean WebSocket (server/transport/leanws.py): RFC 6455 frames by hand, and the connection taken
from aiohttp so that nothing of its HTTP request outlives the handshake."""

from __future__ import annotations

import asyncio
import contextlib
import base64
import gc
import json
import os
import tracemalloc

import pytest
from aiohttp import web

from server.app import SIO_KEY
from server.transport.leanws import (
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
    OP_BINARY,
    OP_PING,
    OP_TEXT,
    FrameError,
    FrameParser,
    HandshakeError,
    accept_key,
    answered_close_code,
)
from tests.helpers import Client, ServerUnderTest, fast_lane_only
from tests.raw_wire import RawWebSocket, client_frame, http_exchange, port_of

pytestmark = fast_lane_only

OP_CONTINUATION = 0x0


# --- frames, without a server --------------------------------------------------------------
def test_masked_frames_split_anywhere_are_reassembled() -> None:
    parser = FrameParser(1 << 20)
    wire = (
        client_frame(OP_TEXT, "héllo".encode(), mask=os.urandom(4))
        + client_frame(OP_BINARY, bytes(range(200)), mask=os.urandom(4))
        + client_frame(OP_TEXT, b"x" * 70_000, mask=os.urandom(4))
    )
    found = []
    for at in range(0, len(wire), 7):  # 7-byte pieces: every header and payload split somewhere
        found += parser.feed(wire[at : at + 7])
    assert found == [(OP_TEXT, "héllo".encode()), (OP_BINARY, bytes(range(200))), (OP_TEXT, b"x" * 70_000)]


def test_a_fragmented_message_with_a_ping_between_its_fragments() -> None:
    parser = FrameParser(1 << 20)
    wire = (
        client_frame(OP_TEXT, b"he", final=False, mask=b"abcd")
        + client_frame(OP_PING, b"p", mask=b"wxyz")
        + client_frame(OP_CONTINUATION, b"ll", final=False, mask=b"1234")
        + client_frame(OP_CONTINUATION, b"o", mask=b"5678")
    )
    assert parser.feed(wire) == [(OP_PING, b"p"), (OP_TEXT, b"hello")]


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (bytes([0x81, 0x02]) + b"hi", CLOSE_PROTOCOL),  # not masked
        (bytes([0xC1, 0x80]) + b"\0\0\0\0", CLOSE_PROTOCOL),  # a reserved bit
        (client_frame(OP_CONTINUATION, b"x"), CLOSE_PROTOCOL),  # nothing to continue
        (client_frame(OP_PING, b"x" * 126), CLOSE_PROTOCOL),  # a control frame over 125 bytes
        (client_frame(OP_PING, b"x", final=False), CLOSE_PROTOCOL),  # a fragmented control frame
        (client_frame(0x3, b"x"), CLOSE_PROTOCOL),  # an unknown opcode
        (client_frame(OP_TEXT, b"a", final=False) + client_frame(OP_TEXT, b"b"), CLOSE_PROTOCOL),
        (client_frame(OP_TEXT, b"x" * 1025), CLOSE_TOO_BIG),
        (client_frame(OP_TEXT, b"x" * 600, final=False) + client_frame(OP_CONTINUATION, b"x" * 600), CLOSE_TOO_BIG),
        # A 64-bit length with its most significant bit set (RFC 6455 section 5.2): broken, not big.
        (bytes([0x81, 0xFF]) + (1 << 63 | 5).to_bytes(8, "big") + b"\0\0\0\0hello", CLOSE_PROTOCOL),
    ],
)
def test_frames_that_break_the_rules_are_refused_with_their_close_code(wire: bytes, code: int) -> None:
    with pytest.raises(FrameError) as raised:
        FrameParser(1024).feed(wire)
    assert raised.value.code == code


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    # 8 bytes of length announcing 2**40 bytes: refused before anything is buffered for it
    with pytest.raises(FrameError) as raised:
        FrameParser(1024).feed(bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big"))
    assert raised.value.code == CLOSE_TOO_BIG


def test_tiny_fragments_cost_their_bytes_not_an_object_each() -> None:
    """An unfinished message in 2-byte fragments is held as its bytes: kept as a list of
    fragments, each cost a bytes object and a list slot (~20x its payload), so the partial
    frames budget, which counts payload bytes, let ~20x more memory be pinned."""
    parser = FrameParser(1 << 20)
    wire = client_frame(OP_TEXT, b"ab", final=False) + client_frame(OP_CONTINUATION, b"cd", final=False) * 1000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        while parser.feed(wire) == [] and wire:
            wire = b""
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 4 * 2002, f"{held} bytes held for 2,002 bytes of fragments"
    assert parser.feed(client_frame(OP_CONTINUATION, b"!")) == [(OP_TEXT, b"ab" + b"cd" * 1000 + b"!")]


@pytest.mark.parametrize(("loose", "most"), [("pongs", 32), ("pings", 32), ("fragments", 1024)])
def test_frames_that_make_no_message_are_not_taken_without_end(loose: str, most: int) -> None:
    """Messages are held to a rate; pings, pongs and fragments are not. Past 1,024 of them in a
    row without a whole message the connection is closed (1008), past 32 pings or pongs (a
    client's keep-alive pings come seconds apart, Engine.IO's heartbeat brings a message every
    ping interval); a whole message starts the count again, so a client that pings now and then
    is never closed for it."""
    parser = FrameParser(1 << 20)
    one = {
        "pongs": client_frame(0xA, b""),
        "pings": client_frame(OP_PING, b"?"),
        "fragments": client_frame(OP_CONTINUATION, b"x", final=False),
    }[loose]
    start = client_frame(OP_TEXT, b"4", final=False) if loose == "fragments" else b""
    end = client_frame(OP_CONTINUATION, b"!") if loose == "fragments" else client_frame(OP_TEXT, b"3")
    for _ in range(3):  # each time within the limit: the message ends the run
        assert parser.feed(start + one * (most - 1) + end)[-1][0] == OP_TEXT
    with pytest.raises(FrameError) as refused:
        parser.feed(start + one * (most + 1) + end)
    assert refused.value.code == 1008


def test_pings_between_fragments_count_as_pings() -> None:
    """A fragmented message may carry pings between its fragments, 32 of them at most."""
    parser = FrameParser(1 << 20)
    ping = client_frame(OP_PING, b"?")
    fragment = client_frame(OP_CONTINUATION, b"x", final=False)
    with pytest.raises(FrameError) as refused:
        parser.feed(client_frame(OP_TEXT, b"4", final=False) + (fragment + ping) * 40)
    assert refused.value.code == 1008


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", 1000),
        ((1001).to_bytes(2, "big") + "bye, ça va".encode(), 1001),
        ((4000).to_bytes(2, "big"), 4000),
        ((1005).to_bytes(2, "big"), 1002),  # reserved: never sent
        (b"\x03", 1002),  # truncated
        ((1000).to_bytes(2, "big") + b"\xff\xfe", 1007),  # a reason that is not UTF-8
    ],
)
def test_a_close_frame_is_answered_with_its_code_or_why_not(payload: bytes, code: int) -> None:
    assert answered_close_code(payload) == code


def test_the_accept_key_of_rfc_6455() -> None:
    headers = {
        "Upgrade": "websocket",
        "Connection": "keep-alive, Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    assert accept_key(headers) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # the example of section 1.3
    for name, value in (("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Key", "c2hvcnQ="), ("Upgrade", "h2c")):
        with pytest.raises(HandshakeError):
            accept_key({**headers, name: value})


# --- against a server -----------------------------------------------------------------------
def live_requests() -> int:
    """The Socket.IO requests alive in this process (an HTTP request of the test is not one)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, web.BaseRequest) and o.path.startswith("/socket.io"))


async def requests_drop_to(count: int) -> int:
    """The live count once it is at most ``count``, or after 10 s: the handshake's handler task
    returns on the server's time, after the client has its connection."""
    deadline = asyncio.get_running_loop().time() + 10
    while (live := live_requests()) > count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    return live


@pytest.mark.usefixtures("collected_first")  # it runs the collector: earlier tests' leftovers must not fail it
async def test_nothing_of_the_http_request_outlives_the_handshake(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    before = live_requests()  # another test's may linger in this process
    for _ in range(5):
        await server.subscriber(clients, session_id)
    sio = server.app[SIO_KEY]
    assert len(sio.eio.sockets) == 5
    # aiohttp kept each WebSocket's request (headers, parser, handler coroutines) alive for the
    # connection's life: about 10 KiB each. Now none is left while all five are connected.
    assert await requests_drop_to(before) <= before  # another test's may end meanwhile
    assert server.runner.server is not None and not server.runner.server.connections
    for environ in sio.environ.values():
        assert "aiohttp.request" not in environ and "wsgi.input" not in environ
    assert (await clients[0].call("unsubscribe_from_session", {"session_id": session_id}))["ok"]


async def test_fragments_pings_and_a_pipelined_first_frame(server: ServerUnderTest) -> None:
    port = port_of(server.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    token = server.token("alice")
    # The CONNECT frame rides in the same write as the upgrade request (it lands in aiohttp's
    # buffer before the connection is taken over), split into two fragments.
    connect = f'40{{"token":"{token}"}}'.encode()
    writer.write(
        f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        + client_frame(OP_TEXT, connect[:10], final=False, mask=os.urandom(4))
        + client_frame(OP_CONTINUATION, connect[10:], mask=os.urandom(4))
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 ")
    ws = RawWebSocket(reader, writer)
    try:
        await ws.receive_until("40{")
        session_id = await server.create_session("alice")
        event = f'421["subscribe_on_session",{{"session_id":"{session_id}"}}]'.encode()
        ws.send_frame(OP_TEXT, event[:5], final=False)
        ws.send_frame(OP_PING, b"are you there")
        ws.send_frame(OP_CONTINUATION, event[5:20], final=False)
        ws.send_frame(OP_CONTINUATION, event[20:])
        ack = await ws.ack(1)
        assert ack["ok"] is True and ack["session_id"] == session_id
        assert ws.pongs == [b"are you there"]
    finally:
        ws.close()


async def test_pings_in_one_read_are_answered_with_one_pong(server: ServerUnderTest) -> None:
    """A pong per ping was a write per ping: pings that arrive together get one pong, for the
    last of them (RFC 6455 section 5.5.3); a message between them answers those before it."""
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        session_id = await server.create_session("alice")
        event = f'421["subscribe_on_session",{{"session_id":"{session_id}"}}]'.encode()
        pings = b"".join(client_frame(OP_PING, str(n).encode(), mask=os.urandom(4)) for n in range(20))
        more = b"".join(client_frame(OP_PING, f"b{n}".encode(), mask=os.urandom(4)) for n in range(5))
        ws.writer.write(pings + client_frame(OP_TEXT, event, mask=os.urandom(4)) + more)
        await ws.ack(1)
        ws.send_frame(OP_PING, b"last")  # its pong comes after every pong before it
        async with asyncio.timeout(5):
            while b"last" not in ws.pongs:
                with contextlib.suppress(TimeoutError):
                    await ws.receive(0.2)
        assert ws.pongs == [b"19", b"b4", b"last"]
    finally:
        ws.close()


async def test_a_message_in_more_fragments_than_a_turn_parses_is_answered(server: ServerUnderTest) -> None:
    """A read is parsed 64 frames per loop turn; the rest waited for the next read when those 64
    frames completed no message (fragments), so a message of 100 fragments sent in one write was
    never answered (until the client sent something else)."""
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        session_id = await server.create_session("alice")
        event = f'421["subscribe_on_session",{{"session_id":"{session_id}"}}]'.encode()
        parts = [event[i : i + 1] for i in range(100)] + [event[100:]]
        wire = client_frame(OP_TEXT, parts[0], final=False)
        wire += b"".join(client_frame(OP_CONTINUATION, part, final=False) for part in parts[1:-1])
        ws.writer.write(wire + client_frame(OP_CONTINUATION, parts[-1]))  # one write, then nothing
        ack = await ws.ack(1)
        assert ack["ok"] is True and ack["session_id"] == session_id
    finally:
        ws.close()


async def test_pipelined_events_past_the_inbox_limit_are_all_answered_in_order(server: ServerUnderTest) -> None:
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        count = 300  # far past INBOX_PAUSE: reading pauses and resumes on the way
        ws.writer.write(b"".join(client_frame(OP_TEXT, f'42{n}["no_such_event",{{}}]'.encode()) for n in range(count)))
        for n in range(count):
            assert (await ws.ack(n))["error"] == "unknown_event"
    finally:
        ws.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes([0x81, 0x02]) + b"40", CLOSE_PROTOCOL),  # unmasked
        (client_frame(OP_TEXT, b"4\xff\xfe"), CLOSE_INVALID_DATA),  # not UTF-8
    ],
)
async def test_a_broken_frame_closes_with_its_code_and_ends_the_session(
    server: ServerUnderTest, frame: bytes, code: int
) -> None:
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    sio = server.app[SIO_KEY]
    try:
        assert len(sio.eio.sockets) == 1
        ws.writer.write(frame)
        with pytest.raises(ConnectionError):
            await ws.receive_until("never")
        assert ws.close_code == code
        assert await ws.closed(2)
        for _ in range(100):
            if not sio.eio.sockets:
                break
            await asyncio.sleep(0.02)
        assert not sio.eio.sockets and not sio.environ
    finally:
        ws.close()


async def test_a_bad_handshake_is_answered_400_and_leaves_no_session(server: ServerUnderTest) -> None:
    status, body = await http_exchange(
        port_of(server.url),
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: bm90IDE2IGJ5dGVz\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    assert status == 400 and json.loads(body)["error"] == "invalid_payload"
    assert not server.app[SIO_KEY].eio.sockets


async def test_a_server_side_disconnect_closes_the_connection(server: ServerUnderTest) -> None:
    ws, sid = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        await server.app[SIO_KEY].disconnect(sid)
        assert await ws.closed(2)  # not left half-open for a client that ignores CLOSE
    finally:
        ws.close()
