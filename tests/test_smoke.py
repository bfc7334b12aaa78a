"""A first end-to-end path: subscribe, change, receive."""

from __future__ import annotations

from tests.helpers import Client, ServerUnderTest


async def test_subscribe_then_receive_status(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    viewer = Client(server.url, server.token("alice"))
    clients.append(viewer)
    await viewer.connect()
    ack = await viewer.call("subscribe_on_session", {"session_id": session_id})
    assert ack["ok"] is True and ack["offset"] == 1
    assert viewer.named("session_snapshot")[0]["session"]["status"] == "ready"
    ack = await viewer.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack == {
        "ok": True,
        "session_id": session_id,
        "status": "recording",
        "previous": "ready",
        "changed": True,
        "offset": 2,
    }
    await viewer.wait_for(lambda: bool(viewer.named("session_status")))
    event = viewer.named("session_status")[0]
    assert event["offset"] == 2 and event["data"] == {"status": "recording", "previous": "ready"}
