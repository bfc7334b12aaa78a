"""CONNECTs that python-socketio refuses before the connect handler: answered in Socket.IO v5's
CONNECT_ERROR shape (an object with ``message``), as every refused CONNECT is, on both lanes."""

from __future__ import annotations

import json

from tests.helpers import ServerUnderTest
from tests.raw_wire import RawWebSocket, port_of


async def test_a_second_connect_and_another_namespace_are_refused_with_an_object(server: ServerUnderTest) -> None:
    token = server.token("alice")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), token)
    try:
        ws.send('40{"token":"' + token + '"}')  # joined already
        again = json.loads((await ws.receive_until("44"))[2:])
        ws.send('40/chat,{"token":"' + token + '"}')  # a namespace this server does not serve
        other = (await ws.receive_until("44/chat,"))[len("44/chat,") :]
        for refused in (again, json.loads(other)):
            assert refused["message"] == "invalid_payload", refused
            assert refused["data"]["error"] == "invalid_payload" and refused["data"]["message"], refused
        # The connection on "/" goes on.
        ws.send('421["no_such_event",{}]')
        assert (await ws.ack(1))["error"] == "unknown_event"
    finally:
        ws.close()


async def test_a_connect_too_large_or_malformed_is_refused_with_a_connect_error(server: ServerUnderTest) -> None:
    # Refused before python-socketio parses it, it was answered a protocol_error EVENT on a
    # namespace not joined: a Socket.IO client ignores that and waits out its connect timeout.
    token = server.token("alice")
    ws = await RawWebSocket.open(port_of(server.url))
    try:
        await ws.receive_until("0{")
        for connect, error in (
            ('40{"token":"' + "a" * 20_000 + '"}', "payload_too_large"),  # over the 16 KiB message cap
            ('40{"token":"' + token + '"}x', "invalid_payload"),  # not JSON
        ):
            ws.send(connect)
            refused = json.loads((await ws.receive_until("4", timeout=5))[2:])  # 44: CONNECT_ERROR, not 42
            assert refused["message"] == error and refused["data"]["error"] == error, refused
        ws.send('40{"token":"' + token + '"}')  # a good one after them is taken
        assert '"sid"' in await ws.receive_until("40")
    finally:
        ws.close()
