"""Bad input over Socket.IO: every case gets its error ack, changes nothing, and the
connection stays usable."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import OWNER, Client, ServerUnderTest


async def snapshot_of_redis(redis: Any) -> dict[str, Any]:
    keys = sorted(await redis.keys("*"))
    values: dict[str, Any] = {}
    for key in keys:
        kind = await redis.type(key)
        if kind == "hash":
            values[key] = await redis.hgetall(key)
        elif kind == "stream":
            values[key] = await redis.xlen(key)
        elif kind == "string":
            values[key] = await redis.get(key)
        else:
            values[key] = kind
    return values


@pytest.fixture
def cases() -> list[tuple[str, Any, str]]:
    sid = "{sid}"
    return [
        ("no_such_event", {"session_id": sid}, "unknown_event"),
        ("session_done", None, "invalid_payload"),
        ("session_done", "just a string", "invalid_payload"),
        ("session_done", [sid], "invalid_payload"),
        ("session_done", {"session_id": 12345}, "invalid_session_id"),
        ("session_done", {"session_id": sid.upper() + "x"}, "invalid_session_id"),
        ("session_done", {"session_id": "../../etc/passwd"}, "invalid_session_id"),
        ("session_done", {"session_id": sid, "extra": True}, "invalid_payload"),
        ("set_session_status", {"session_id": sid}, "invalid_payload"),
        ("set_session_status", {"session_id": sid, "status": 3}, "invalid_payload"),
        ("set_session_status", {"session_id": sid, "status": ["recording"]}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "offset": "7", "epoch": "x"}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "offset": -1, "epoch": "x"}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "offset": 1, "epoch": "e" * 100}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "offset": 2**64, "epoch": "x"}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "offset": 10**30, "epoch": "x"}, "invalid_payload"),
        # Half a position (PROTOCOL, subscribe_on_session): refused, not taken as none.
        ("subscribe_on_session", {"session_id": sid, "offset": 0}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "epoch": "x"}, "invalid_payload"),
        ("subscribe_on_session", {"session_id": sid, "last_id": "1-0"}, "invalid_payload"),
        ("session_done", {"session_id": sid, "telegram_user_id": "1", "user_id": "bob"}, "invalid_payload"),
        ("create_tasks_from_chunks", {"session_id": sid, "chunk_ids": {"a": 1}}, "invalid_payload"),
        ("session_done", {"session_id": sid, "pad": "x" * 40_000}, "payload_too_large"),
    ]


async def test_each_bad_input_is_answered_and_changes_nothing(
    server: ServerUnderTest, clients: list[Client], redis: Any, cases: list[tuple[str, Any, str]]
) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    before = await snapshot_of_redis(redis)
    for event, payload, expected in cases:
        if isinstance(payload, dict):
            payload = {k: (v.replace("{sid}", session_id) if isinstance(v, str) else v) for k, v in payload.items()}
        elif isinstance(payload, list):
            payload = [session_id]
        ack = await client.call(event, payload)
        assert ack["ok"] is False and ack["error"] == expected, (event, payload, ack)
        assert isinstance(ack["message"], str) and "Traceback" not in ack["message"]
    assert await snapshot_of_redis(redis) == before
    assert not client.named("session_snapshot")  # no refused subscribe sent one
    # Still connected and usable.
    assert client.sio.connected
    assert (await client.call("session_done", {"session_id": session_id}))["ok"] is True


async def test_several_arguments_are_refused(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    ack = await client.sio.call("session_done", ({"session_id": session_id}, "more"), timeout=5)
    assert ack["error"] == "invalid_payload"


async def test_oversized_message_without_ack_gets_a_protocol_error_event(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    await client.sio.emit("session_done", {"pad": "x" * 40_000})
    await client.wait_for(lambda: bool(client.named("protocol_error")))
    assert client.named("protocol_error")[0]["error"] == "payload_too_large"
    assert client.sio.connected


async def test_event_rate_is_capped_per_connection(redis_process: Any, redis: Any, tmp_path: Any) -> None:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, event_rate_per_s=1.0, event_burst=3)
    client = Client(srv.url, srv.token("alice"))
    try:
        await client.connect()
        session_id = await srv.create_session("alice")
        acks = [await client.call("subscribe_on_session", {"session_id": session_id}) for _ in range(5)]
        assert [a["ok"] for a in acks[:3]] == [True, True, True]
        assert acks[3]["error"] == "rate_limited" and acks[4]["error"] == "rate_limited"
        assert client.sio.connected
    finally:
        await client.close()
        await srv.stop()


async def test_polling_transport_works_too(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect(transports=["polling"])
    await client.call("subscribe_on_session", {"session_id": session_id})
    await server.services.voice.set_status(session_id, "recording", OWNER)
    await client.wait_for(lambda: bool(client.named("session_status")))
    assert client.offsets(session_id) == [2]


async def test_a_missing_payload_is_invalid_payload(server: ServerUnderTest, clients: list[Client]) -> None:
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    ack = await client.sio.call("session_done", timeout=5)
    assert ack["error"] == "invalid_payload", ack


async def test_a_client_sent_telegram_user_id_is_ignored(server: ServerUnderTest, clients: list[Client]) -> None:
    """Seed 002: ignored for authorization and routing, not refused; the token's id is used."""
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice", telegram_user_id="777"))
    clients.append(client)
    await client.connect()
    ack = await client.call("session_done", {"session_id": session_id, "telegram_user_id": "999"})
    assert ack["ok"] is True, ack
    jobs = server.services.jobs
    await jobs.ensure_group()
    [delivery] = await jobs.claim("test", count=10, block_ms=10, visibility_ms=60_000)
    assert delivery.job.job_id == ack["job_id"] and delivery.job.telegram_user_id == "777"
