"""The dead-letter list keeps the newest entries only, and a deleted session's job is no dead letter.

A guest that pressed Done on its voice session and deleted the session before the job ran
dead-lettered that job ("the session no longer exists", a permanent failure): guests are cheap,
so an uncapped list grew for good, and the operator's ``dead_letters`` alert (raised from one
dead letter by default) could be kept raised by anyone. Such a job is now dropped as its turn
comes; the list is capped all the same, for the jobs that do fail.
"""

from __future__ import annotations

import aiohttp

from storage.jobs import Job
from tests.admin.test_http import admin_token, call
from tests.helpers import Client, ServerUnderTest
from tests.test_worker import drain, make_worker


async def test_the_dead_letter_list_keeps_the_newest_jobs_only(server: ServerUnderTest) -> None:
    server.services.jobs.dead_max = 3
    session_id = await server.create_session("alice")
    jobs = [Job(type="NO_SUCH_PROCESSOR", session_id=session_id, performer_id="alice") for _ in range(5)]
    for job in jobs:
        await server.services.jobs.enqueue(job)
    await drain(make_worker(server), server)
    dead = await server.services.jobs.dead(limit=100)
    assert [job.job_id for job in dead] == [job.job_id for job in jobs][::-1][:3]  # newest first
    assert (await server.services.jobs.counts())["dead"] == 3
    # Their burial times as many as the list keeps: the newest, bounded as the list is.
    kept: list[str] = await server.services.redis.zrange(server.services.keys.jobs_dead_at(), 0, -1)  # type: ignore[assignment]
    assert sorted(kept) == sorted(job.job_id for job in dead)


async def test_a_job_of_a_session_deleted_before_it_ran_is_dropped_not_dead_lettered(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/auth/guest") as resp:
            token = (await resp.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        guest = Client(server.url, token)
        clients.append(guest)
        await guest.connect()
        for i in range(3):
            async with http.post(
                f"{server.url}/voicebot/create_session", json={"session_name": f"s{i}"}, headers=headers
            ) as resp:
                session_id = (await resp.json())["session_id"]
            ack = await guest.call("session_done", {"session_id": session_id})
            assert ack["ok"], ack
            async with http.delete(f"{server.url}/voicebot/sessions/{session_id}", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
    dropped = server.services.metrics.jobs_dropped
    before = dropped._value.get()
    await drain(make_worker(server), server)
    assert await server.services.jobs.counts() == {"queued": 0, "delayed": 0, "dead": 0}
    assert dropped._value.get() - before == 3
    async with aiohttp.ClientSession(base_url=server.url) as http:
        status, body = await call(http, "GET", "/admin/alerts", admin_token(server))
    assert status == 200 and body["alerts"] == [], body
