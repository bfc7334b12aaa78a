"""Binary attachments count toward the message caps, and their number is bounded (raw socket).

On both lanes: the stock lane holds a binary message's header until its attachments are in
(server/transport/stock.py, StockSessionServer.screen); it once handed each part to
python-socketio as it came, uncounted, however many the header declared."""

from __future__ import annotations

import json

from server.app import SIO_KEY
from server.transport.messages import MAX_ATTACHMENTS
from tests.helpers import Client, ServerUnderTest
from tests.raw_wire import RawWebSocket, port_of

PLACEHOLDER = '{"_placeholder":true,"num":%d}'


async def still_usable(ws: RawWebSocket, session_id: str, ack_id: int) -> None:
    ws.send(f'42{ack_id}["session_done",{{"session_id":"{session_id}"}}]')
    assert (await ws.ack(ack_id))["ok"] is True


async def test_a_100_kib_attachment_is_payload_too_large(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        ws.send('451-7["session_done",' + PLACEHOLDER % 0 + "]")
        ws.send_binary(b"\0" * 100 * 1024)
        ack = await ws.ack(7)
        assert ack["error"] == "payload_too_large", ack
        await still_usable(ws, session_id, 8)
    finally:
        ws.close()


async def test_attachments_add_up(server: ServerUnderTest) -> None:
    """Each attachment is under the cap; together they are not."""
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        ws.send('452-3["session_done",' + PLACEHOLDER % 0 + "," + PLACEHOLDER % 1 + "]")
        ws.send_binary(b"a" * 10_000)
        ws.send_binary(b"b" * 10_000)  # 20 KB in all, over the 16 KiB cap
        assert (await ws.ack(3))["error"] == "payload_too_large"
        await still_usable(ws, session_id, 4)
    finally:
        ws.close()


async def test_too_many_attachments_are_refused_and_dropped(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    sio = server.app[SIO_KEY]
    try:
        count = 1_000_000
        ws.send(f'45{count}-9["session_done",' + PLACEHOLDER % 0 + "]")
        ack = await ws.ack(9)
        assert ack["error"] == "payload_too_large" and str(MAX_ATTACHMENTS) in ack["message"]
        for _ in range(8):  # a few of the declared megabyte attachments: dropped, never kept
            ws.send_binary(b"\0" * (1 << 19))
        await still_usable(ws, session_id, 10)
        # Nothing of the refused message is kept (python-socketio's pending packets on the fast
        # lane, the lane's own held messages on the stock lane).
        assert (sio.binary if sio.lane == "stock" else sio._binary_packet) == {}
    finally:
        ws.close()


async def test_a_binary_message_declaring_no_attachment_is_refused_alone(server: ServerUnderTest) -> None:
    # It was held for an attachment that could never complete it: the fast lane took the next
    # message for it (answered as this one's refusal, its own ack never sent), the stock lane
    # swallowed every later message of the connection, unanswered.
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    sio = server.app[SIO_KEY]
    try:
        for number, header in ((11, '450-11["session_done"]'), (13, '4513["session_done"]')):
            ws.send(header)
            ws.send(f'42{number + 1}["session_done",{{"session_id":"{session_id}"}}]')
            ack = await ws.ack(number)
            assert ack["error"] == "invalid_payload" and "one attachment or more" in ack["message"], ack
            assert (await ws.ack(number + 1))["ok"] is True
        assert (sio.binary if sio.lane == "stock" else sio._binary_packet) == {}
    finally:
        ws.close()


async def test_an_oversized_binary_header_skips_its_attachments(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        pad = "x" * 20_000
        ws.send('451-5["session_done",{"pad":"' + pad + '","b":' + PLACEHOLDER % 0 + "}]")
        ws.send_binary(b"\0" * 1000)
        assert (await ws.ack(5))["error"] == "payload_too_large"
        await still_usable(ws, session_id, 6)
    finally:
        ws.close()


async def test_a_small_attachment_is_still_handled(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        ws.send(
            '451-2["session_done",'
            + json.dumps({"session_id": session_id}).rstrip("}")
            + ',"blob":'
            + PLACEHOLDER % 0
            + "}]"
        )
        ws.send_binary(b"\1" * 100)
        assert (await ws.ack(2))["error"] == "invalid_payload"  # parsed: the field is unknown
        await still_usable(ws, session_id, 3)
    finally:
        ws.close()


async def test_a_binary_event_with_a_reserved_name_is_refused(server: ServerUnderTest) -> None:
    """python-socketio would run its own disconnect handler for it (the stock lane once let it)."""
    session_id = await server.create_session("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        ws.send('451-4["disconnect",{"seq":9,"blob":' + PLACEHOLDER % 0 + "}]")
        ws.send_binary(b"\1" * 10)
        ack = await ws.ack(4)
        assert ack["error"] == "unknown_event" and "reserved" in ack["message"], ack
        assert ack["seq"] == 9  # echoed, as by every error ack
        await still_usable(ws, session_id, 5)
    finally:
        ws.close()
