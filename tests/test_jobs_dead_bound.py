"""The dead-letter list keeps the newest entries only: an anonymous client can fill it.

A guest that presses Done on its voice session and deletes the session before the job ran
dead-letters that job ("the session no longer exists", a permanent failure); guests are cheap and
sessions are created by the hundred a day per address, so an uncapped list grew for good.
"""

from __future__ import annotations

import aiohttp

from tests.helpers import Client, ServerUnderTest
from tests.test_worker import drain, make_worker


async def test_the_dead_letter_list_keeps_the_newest_jobs_only(server: ServerUnderTest, clients: list[Client]) -> None:
    server.services.jobs.dead_max = 3
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/auth/guest") as resp:
            token = (await resp.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        guest = Client(server.url, token)
        clients.append(guest)
        await guest.connect()
        job_ids: list[str] = []
        for i in range(5):
            async with http.post(
                f"{server.url}/voicebot/create_session", json={"session_name": f"s{i}"}, headers=headers
            ) as resp:
                session_id = (await resp.json())["session_id"]
            ack = await guest.call("session_done", {"session_id": session_id})
            assert ack["ok"], ack
            job_ids.append(ack["job_id"])
            async with http.delete(f"{server.url}/voicebot/sessions/{session_id}", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
    await drain(make_worker(server), server)
    dead = await server.services.jobs.dead(limit=100)
    assert [job.job_id for job in dead] == job_ids[::-1][:3]  # newest first
    assert all("no longer exists" in job.last_error for job in dead)
    assert (await server.services.jobs.counts())["dead"] == 3
