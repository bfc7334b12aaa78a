"""One user cannot bury the shared worker pool (issue 20, finding 7): jobs per user per minute."""

from __future__ import annotations

from handlers.voice.actions import JOBS_PER_MIN
from tests.helpers import Client, ServerUnderTest, to_window_start


async def test_a_user_queues_at_most_the_jobs_cap_a_minute(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    alice = await server.subscriber(clients, session_id)
    redis = server.services.redis
    before = await redis.xlen(server.services.keys.jobs())
    to_window_start(server.services.clock)  # the jobs a minute: all of them in one minute
    acks = [await alice.call("post_process_session", {"session_id": session_id}) for _ in range(JOBS_PER_MIN + 20)]
    assert sum(ack["ok"] for ack in acks) == JOBS_PER_MIN
    refused = [ack for ack in acks if not ack["ok"]]
    assert {ack["error"] for ack in refused} == {"rate_limited"}
    assert await redis.xlen(server.services.keys.jobs()) - before == JOBS_PER_MIN
    # A refused done changes nothing: the session stays open.
    ack = await alice.call("session_done", {"session_id": session_id})
    assert ack["error"] == "rate_limited"
    record = await server.services.voice.get(session_id)
    assert record is not None and record.is_active
    # Another user still queues.
    bobs = await server.create_session("bob")
    bob = await server.subscriber(clients, bobs, user="bob")
    assert (await bob.call("post_process_session", {"session_id": bobs}))["ok"] is True
