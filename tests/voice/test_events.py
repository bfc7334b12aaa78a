"""Voice Socket.IO events: the access-check order, Done, jobs, status transitions."""

from __future__ import annotations

import asyncio

import json
from typing import Any

import pytest

from auth.claims import Permission
from tests.helpers import Client, ServerUnderTest

MISSING = "00000000-0000-4000-8000-000000000000"
MUTATING = [
    ("session_done", {}),
    ("post_process_session", {}),
    ("create_tasks_from_chunks", {"chunk_ids": ["c1"]}),
    ("set_session_status", {"status": "recording"}),
]
ALL_SESSION_EVENTS = [*MUTATING, ("subscribe_on_session", {})]


async def connected(server: ServerUnderTest, clients: list[Client], user: str = "alice", **kw: Any) -> Client:
    client = Client(server.url, server.token(user, **kw))
    clients.append(client)
    return await client.connect()


async def queued_jobs(redis: Any, server: ServerUnderTest) -> list[dict[str, Any]]:
    entries = await redis.xrange(server.services.keys.jobs())
    return [json.loads(fields["job"]) for _, fields in entries]


@pytest.mark.parametrize("event, extra", ALL_SESSION_EVENTS)
async def test_access_check_order(
    server: ServerUnderTest, clients: list[Client], redis: Any, event: str, extra: dict[str, Any]
) -> None:
    own = await server.create_session("alice")
    other = await server.create_session("carol")
    alice = await connected(server, clients, "alice")
    before = await redis.xlen(server.services.keys.jobs())

    assert (await alice.call(event, {"session_id": "bad", **extra}))["error"] == "invalid_session_id"
    assert (await alice.call(event, {**extra}))["error"] == "invalid_session_id"
    assert (await alice.call(event, {"session_id": MISSING, **extra}))["error"] == "session_not_found"
    assert (await alice.call(event, {"session_id": other, **extra}))["error"] == "forbidden"
    # An expired token is noticed on the next event, before the session is even looked up;
    # a malformed id still comes first.
    server.services.clock.shift_ms = 2 * 3600 * 1000
    try:
        assert (await alice.call(event, {"session_id": MISSING, **extra}))["error"] == "unauthorized"
        assert (await alice.call(event, {"session_id": "bad", **extra}))["error"] == "invalid_session_id"
    finally:
        server.services.clock.shift_ms = 0
    assert (await alice.call(event, {"session_id": own, **extra}))["ok"] is True
    # Refused calls queued nothing.
    assert await redis.xlen(server.services.keys.jobs()) - before == (
        1 if event in {"session_done", "post_process_session", "create_tasks_from_chunks"} else 0
    )


@pytest.mark.parametrize("event, extra", MUTATING)
async def test_mutations_need_update_permission(
    server: ServerUnderTest, clients: list[Client], event: str, extra: dict[str, Any]
) -> None:
    session_id = await server.create_session("alice")
    reader = await connected(server, clients, "alice", perms=(Permission.READ_OWN,))
    ack = await reader.call(event, {"session_id": session_id, **extra})
    assert ack["error"] == "forbidden" and ack["ok"] is False
    assert (await reader.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True


async def test_read_all_may_read_but_only_owner_sets_status(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    ops = await connected(server, clients, "ops", perms=(Permission.READ_ALL, Permission.UPDATE))
    assert (await ops.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    assert (await ops.call("set_session_status", {"session_id": session_id, "status": "recording"}))[
        "error"
    ] == "forbidden"
    assert (await ops.call("session_done", {"session_id": session_id}))["ok"] is True


async def test_done_closes_counts_clears_active_and_queues_job(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    voice = server.services.voice
    session_id = await server.create_session("alice")
    await voice.set_active("alice", session_id)
    alice = Client(server.url, server.token("alice", telegram_user_id="777"))
    clients.append(alice)
    await alice.connect()
    watcher = await server.subscriber(clients, session_id)

    ack = await alice.call("session_done", {"session_id": session_id})
    assert ack["ok"] and ack["done_count"] == 1 and ack["is_active"] is False and ack["active_session_cleared"] is True
    assert await voice.active_id("alice") is None
    first = await voice.get(session_id)
    assert first is not None and first.closed_at is not None
    while server.services.clock.now_ms() <= first.closed_at:  # the next Done comes a moment later
        await asyncio.sleep(0.001)
    ack = await alice.call("session_done", {"session_id": session_id})
    assert ack["ok"] and ack["done_count"] == 2 and ack["active_session_cleared"] is False
    session = await voice.get(session_id)
    assert session is not None and (session.status, session.is_active, session.done_count) == ("closed", False, 2)
    # When it was closed: the first Done's time (each Done moved it).
    assert session.closed_at == first.closed_at and session.updated_at > first.closed_at

    jobs = await queued_jobs(redis, server)
    assert [j["type"] for j in jobs] == ["DONE_MULTIPROMPT", "DONE_MULTIPROMPT"]
    assert {(j["performer_id"], j["telegram_user_id"], j["session_id"]) for j in jobs} == {("alice", "777", session_id)}

    await watcher.wait_for(lambda: len(watcher.named("session_update")) == 2)
    assert [e["data"]["done_count"] for e in watcher.named("session_update")] == [1, 2]
    assert {e["data"]["closed_at"] for e in watcher.named("session_update")} == {first.closed_at}
    assert [e["data"] for e in watcher.named("session_status")] == [{"status": "closed", "previous": "ready"}]
    # Each Done's job is said to wait for a worker (no worker runs here), and kept as the last job.
    await watcher.wait_for(lambda: len(watcher.named("job_progress")) == 2)
    announced = [(e["data"]["job_id"], e["data"]["step"]) for e in watcher.named("job_progress")]
    assert announced == [(j["job_id"], "queued") for j in jobs], announced
    kept = await voice.get(session_id)
    assert kept is not None and kept.last_job is not None
    assert (kept.last_job["job_id"], kept.last_job["step"]) == (jobs[1]["job_id"], "queued")
    assert watcher.offsets(session_id) == [2, 3, 4, 5, 6]


async def test_done_leaves_another_active_session_alone(server: ServerUnderTest, clients: list[Client]) -> None:
    voice = server.services.voice
    closing, other = await server.create_session("alice"), await server.create_session("alice")
    await voice.set_active("alice", other)
    alice = await connected(server, clients, "alice")
    assert (await alice.call("session_done", {"session_id": closing}))["active_session_cleared"] is False
    assert await voice.active_id("alice") == other


async def test_client_sent_user_ids_are_ignored(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    ack = await alice.call("session_done", {"session_id": session_id, "telegram_user_id": "999"})
    assert ack["ok"] is True  # seed 002: a client-sent telegram_user_id is ignored, not refused
    [job] = await queued_jobs(redis, server)
    assert job["telegram_user_id"] != "999"  # the token's (none here), never the payload's
    ack = await alice.call("session_done", {"session_id": session_id, "user_id": "bob"})
    assert ack["error"] == "invalid_payload"  # any other unknown field is refused outright


async def test_post_process_and_tasks_queue_jobs(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    ack = await alice.call("post_process_session", {"session_id": session_id})
    assert ack["ok"] and ack["job_id"]
    ack = await alice.call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": ["a", "b", "a"]})
    assert ack["ok"] and ack["chunk_count"] == 2
    jobs = await queued_jobs(redis, server)
    assert [(j["type"], j["payload"]) for j in jobs] == [
        ("POST_PROCESS_SESSION", {}),
        ("CREATE_TASKS_FROM_CHUNKS", {"chunk_ids": ["a", "b"]}),
    ]


@pytest.mark.parametrize(
    "chunk_ids",
    [[], ["x" * 65], ["bad id"], ["ok", 5], "c1", [f"c{i}" for i in range(101)], None],
)
async def test_chunk_list_is_validated(
    server: ServerUnderTest, clients: list[Client], redis: Any, chunk_ids: Any
) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    ack = await alice.call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": chunk_ids})
    assert ack["error"] == "invalid_payload"
    assert await queued_jobs(redis, server) == []


async def test_status_transitions(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")

    async def to(status: str) -> dict[str, Any]:
        return await alice.call("set_session_status", {"session_id": session_id, "status": status})

    assert (await to("paused"))["error"] == "invalid_state"  # ready -> paused is not a move
    for status in ("recording", "cutting", "recording", "paused", "final_uploading"):
        ack = await to(status)
        assert ack["ok"] and ack["status"] == status, ack
    assert (await to("final_uploading"))["changed"] is False
    assert (await to("closed"))["error"] == "invalid_state"  # only Done closes
    assert (await to("banana"))["error"] == "invalid_payload"
    await alice.call("session_done", {"session_id": session_id})
    assert (await to("recording"))["error"] == "invalid_state"  # a closed session records no more
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == "closed"


async def test_status_is_broadcast_to_every_subscriber(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watchers = [await server.subscriber(clients, session_id) for _ in range(3)]
    recorder = await connected(server, clients, "alice")
    await recorder.call("set_session_status", {"session_id": session_id, "status": "recording"})
    await recorder.call("set_session_status", {"session_id": session_id, "status": "error"})
    for watcher in watchers:
        await watcher.wait_for(lambda w=watcher: len(w.named("session_status")) == 2)
        assert [e["data"]["status"] for e in watcher.named("session_status")] == ["recording", "error"]
    assert recorder.named("session_status") == []  # not subscribed, not told


async def test_unsubscribe_stops_delivery(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    alice = await connected(server, clients, "alice")
    await alice.call("subscribe_on_session", {"session_id": session_id})
    assert (await alice.call("unsubscribe_from_session", {"session_id": session_id})) == {
        "ok": True,
        "session_id": session_id,
        "was_subscribed": True,
    }
    assert (await alice.call("unsubscribe_from_session", {"session_id": session_id}))["was_subscribed"] is False
    await alice.call("set_session_status", {"session_id": session_id, "status": "recording"})
    probe = await connected(server, clients, "alice")
    await probe.call("subscribe_on_session", {"session_id": session_id})
    await probe.call("set_session_status", {"session_id": session_id, "status": "paused"})
    await probe.wait_for(lambda: len(probe.named("session_status")) == 1)
    assert alice.named("session_status") == []
