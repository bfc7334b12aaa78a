"""protocol.wire_json: what it writes reads back as json.dumps's text would, and the server uses it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import wire_json
from tests.helpers import ServerUnderTest
from tests.raw_wire import RawWebSocket, port_of

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_it_reads_back_as_the_standard_librarys_text(value: Any) -> None:
    assert json.loads(wire_json.dumps(value)) == json.loads(json.dumps(value))


def test_what_orjson_refuses_goes_to_the_standard_library() -> None:
    assert wire_json.dumps({"n": 2**70}) == '{"n":1180591620717411303424}'
    assert wire_json.dumps({1: "x"}) == '{"1":"x"}'
    assert wire_json.dumps({"a": "é"}) == '{"a":"é"}'


async def test_socketio_packets_and_snapshots_are_written_with_it(server: ServerUnderTest) -> None:
    import engineio.packet

    assert engineio.packet.Packet.json is wire_json  # Engine.IO's OPEN packet too
    session_id = await server.create_session("alice", name="Überstunden")
    ws, _ = await RawWebSocket.socketio(port_of(server.url), server.token("alice"))
    try:
        ws.send('421["subscribe_on_session",{"session_id":"' + session_id + '"}]')
        snapshot = await ws.receive_until('42["session_snapshot"')
        assert "Überstunden" in snapshot  # json.dumps would have written \\u00dc
        assert json.loads((await ws.receive_until("431"))[3:])[0]["ok"] is True
        ws.send('422["événement",{}]')  # an unknown event: its ack names it
        refused = await ws.receive_until("432")
        assert "événement" in refused, refused  # written by WirePacket, not escaped
    finally:
        ws.close()
