"""A voice press retried with its ``request_id`` (or the bot's ``/done`` with its Idempotency-Key)
after Redis lost part of the first try: the person's intent holds, one close and one job.

On a Redis Cluster a session's keys (its record, log, and the press's ``request_id`` answer) are
in the session's slot and the job queue in ``{jobs}``, often on another shard: a failover of
the session's shard to a lagging replica loses the first try's close and answer while its job
stays queued. It is reproduced as tests/test_rollback.py does: the session's keys DUMPed and
RESTOREd behind the server's back (the keys written since deleted), the job queue left as it is.
The other way round (the answer's shard lost the Idempotency-Key's answer, the close kept) is a
key deleted.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
from redis.asyncio import Redis

from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.rollback import Rollback


async def queued(server: ServerUnderTest, session_id: str, job_type: str) -> list[str]:
    """The ids of the jobs of ``job_type`` queued for ``session_id``."""
    entries: Any = await server.services.redis.xrange(server.services.keys.jobs())
    jobs = [json.loads(fields["job"]) for _, fields in entries]
    return [j["job_id"] for j in jobs if j["session_id"] == session_id and j["type"] == job_type]


async def closes(server: ServerUnderTest, session_id: str) -> tuple[str, int]:
    found = await server.services.voice.get(session_id)
    assert found is not None
    return found.status, found.done_count


async def test_session_done_retried_after_the_close_was_lost_closes_once_and_queues_one_job(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        lost = Rollback(raw, session_id=session_id)
        await lost.take()
        client = await server.subscriber(clients, session_id)
        press = {"session_id": session_id, "request_id": "press-0001"}
        first = await client.call("session_done", press)
        assert first["ok"] and await closes(server, session_id) == ("closed", 1), first
        await lost.restore()  # the close and its answer lost; its job still queued
        assert await closes(server, session_id) == ("ready", 0)
        again = await client.call("session_done", press)
        assert again["ok"] and again["done_count"] == 1, again
        assert await closes(server, session_id) == ("closed", 1)
        assert await queued(server, session_id, "DONE_MULTIPROMPT") == [first["job_id"]] == [again["job_id"]]
    finally:
        await raw.aclose()


async def test_job_presses_retried_after_their_answers_were_lost_queue_one_job_each(
    server: ServerUnderTest, clients: list[Client], redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    try:
        session_id = await server.create_session("alice")
        lost = Rollback(raw, session_id=session_id)
        await lost.take()
        client = await server.subscriber(clients, session_id)
        presses: list[tuple[str, str, dict[str, Any]]] = [
            ("post_process_session", "POST_PROCESS_SESSION", {"request_id": "process-0001"}),
            ("create_tasks_from_chunks", "CREATE_TASKS_FROM_CHUNKS", {"request_id": "tasks-0001", "chunk_ids": ["c1"]}),
        ]
        for event, job_type, fields in presses:
            press = {"session_id": session_id, **fields}
            first = await client.call(event, press)
            assert first["ok"] and first["repeated"] is False, first
            await lost.restore()  # its answer lost; its job still queued
            again = await client.call(event, press)
            assert again["ok"], again
            assert await queued(server, session_id, job_type) == [first["job_id"]] == [again["job_id"]], event
    finally:
        await raw.aclose()


async def _bot_done(server: ServerUnderTest, key: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Idempotency-Key": key}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/voicebot/bot/command", json={"text": "/done"}, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_the_bots_done_retried_after_its_key_or_its_close_was_lost_closes_once_with_one_job(
    server: ServerUnderTest, redis_process: RedisProcess
) -> None:
    raw = Redis.from_url(redis_process.url)
    voice, keys = server.services.voice, server.services.keys
    try:
        # The key's answer lost, the close kept: the retry is the same press.
        kept = await server.create_session("alice")
        await voice.set_active("alice", kept)
        key = str(uuid.uuid4())
        status, first = await _bot_done(server, key)
        assert status == 200 and await closes(server, kept) == ("closed", 1), first
        assert await raw.delete(keys.idempotent_answer("bot_command", "u:alice", key)) == 1
        await voice.set_active("alice", kept)  # pointed at it again, as by /session <id>
        status, again = await _bot_done(server, key)
        assert status == 200 and await closes(server, kept) == ("closed", 1), again
        assert len(await queued(server, kept, "DONE_MULTIPROMPT")) == 1

        # The close lost with its press, the key's claim and answer too (one Redis, its last
        # second), the job kept (the cluster's {jobs} shard): the retry closes it, one job.
        closing = await server.create_session("alice")
        await voice.set_active("alice", closing)
        lost = Rollback(raw, session_id=closing)
        await lost.take()
        key = str(uuid.uuid4())
        status, first = await _bot_done(server, key)
        assert status == 200, first
        await lost.restore()
        await raw.delete(keys.idempotent_answer("bot_command", "u:alice", key))
        await voice.set_active("alice", closing)
        status, again = await _bot_done(server, key)
        assert status == 200 and await closes(server, closing) == ("closed", 1), again
        assert len(await queued(server, closing, "DONE_MULTIPROMPT")) == 1
    finally:
        await raw.aclose()
