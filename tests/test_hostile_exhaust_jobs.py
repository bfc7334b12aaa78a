"""What anonymous clients can queue for the shared workers, bounded per client address.

One user queues at most 30 jobs a minute (Done, post-processing, tasks: tests/voice/
test_job_caps.py), but guest tokens are free to mint: the guests of one address queued 30 a
minute each, and the queue keeps its newest 100,000 entries (storage.jobs.JOB_STREAM_MAXLEN), so
a thousand guests (one address's day) could put 30,000 jobs a minute ahead of everyone's and,
within minutes, have the oldest trimmed away undelivered. Now the guests of one address queue
at most ``jobs_per_min_per_address`` jobs a minute together.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from auth.claims import GUEST_PERMISSIONS
from handlers.voice.actions import JOBS_PER_MIN
from storage.clock import Clock
from tests.helpers import Client, RedisProcess, ServerUnderTest, to_window_start

PER_ADDRESS = JOBS_PER_MIN + 10  # more than one guest may queue, fewer than two


@pytest_asyncio.fixture
async def capped(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    from tests.conftest import start_server

    clock = Clock()
    to_window_start(clock, 60)  # every press of the test in one minute
    srv = await start_server(redis_process.url, tmp_path, clock=clock, jobs_per_min_per_address=PER_ADDRESS)
    yield srv
    await srv.stop()


async def guest_with_session(http: aiohttp.ClientSession, srv: ServerUnderTest) -> tuple[Client, str]:
    token = srv.token(f"guest-{uuid.uuid4().hex}", perms=GUEST_PERMISSIONS, ttl_s=86_400, guest=True)
    async with http.post(
        f"{srv.url}/voicebot/create_session", json={}, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status == 201, await resp.text()
        session_id = str((await resp.json())["session_id"])
    client = Client(srv.url, token)
    await client.connect()
    return client, session_id


async def test_guests_of_one_address_queue_at_most_the_minutes_jobs(capped: ServerUnderTest, redis: Redis) -> None:
    """Two guests of one address press post-processing 30 times each: PER_ADDRESS jobs are
    queued between them, the rest refused rate_limited with nothing queued, and the second
    guest's Done is refused too, leaving its session open; an account from that address still
    queues. Fails without the cap: 60 jobs are queued."""
    srv = capped
    jobs = srv.services.keys.jobs()
    async with aiohttp.ClientSession() as http:
        (first, one), (second, two) = await guest_with_session(http, srv), await guest_with_session(http, srv)
        try:
            before = await redis.xlen(jobs)
            acks = [await first.call("post_process_session", {"session_id": one}) for _ in range(JOBS_PER_MIN)]
            acks += [await second.call("post_process_session", {"session_id": two}) for _ in range(JOBS_PER_MIN)]
            assert sum(ack["ok"] for ack in acks) == PER_ADDRESS
            refused = [ack for ack in acks if not ack["ok"]]
            assert {ack["error"] for ack in refused} == {"rate_limited"}, refused
            assert all("from this address" in ack["message"] for ack in refused), refused[0]
            assert await redis.xlen(jobs) - before == PER_ADDRESS
            done = await second.call("session_done", {"session_id": two})
            assert done["ok"] is False and done["error"] == "rate_limited", done
            record = await srv.services.voice.get(two)
            assert record is not None and record.is_active
            # An account the operator issued, from the same address, is held by its own cap.
            owned = await srv.create_session("acct")
            account = await srv.subscriber([], owned, user="acct")
            try:
                assert (await account.call("post_process_session", {"session_id": owned}))["ok"] is True
            finally:
                await account.sio.disconnect()
        finally:
            await first.sio.disconnect()
            await second.sio.disconnect()
