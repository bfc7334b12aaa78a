"""The operator is told of jobs that wait for a worker, and of a job whose worker went silent
(audit "jobsreal": a Done queued with no worker running raised nothing but a Prometheus gauge,
and a job whose worker was killed was said to be "running")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio

from storage.jobs import Job
from tests.admin.test_http import admin_token, call
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.test_worker import drain, make_worker


@pytest_asyncio.fixture
async def quick(redis: object, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server whose jobs count as waiting, or stuck, after one second."""
    server = await start_server(redis_process.url, tmp_path, admin_job_stuck_s=1)
    yield server
    await server.stop()


async def job_alerts(server: ServerUnderTest, name: str, *, present: bool = True) -> list[dict[str, Any]]:
    """The alerts ``name`` once they are raised (or, ``present`` False, once none is), 10 s at most."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    async with aiohttp.ClientSession(base_url=server.url) as http:
        while True:
            status, answer = await call(http, "GET", "/admin/alerts", admin_token(server))
            assert status == 200, answer
            found = [alert for alert in answer["alerts"] if alert["alert"] == name]
            if bool(found) == present:
                return found
            assert loop.time() < deadline, (name, present, answer["alerts"])
            await asyncio.sleep(0.1)


async def test_jobs_no_worker_takes_up_are_an_alert_naming_what_to_do(quick: ServerUnderTest) -> None:
    session_id = await quick.create_session("alice")
    await quick.services.jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    await quick.services.jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    # No worker ever ran here (no consumer group yet): both wait.
    [alert] = await job_alerts(quick, "jobs_waiting")
    assert alert["waiting"] == 2 and alert["workers"] == 0 and alert["oldest_waited_ms"] >= 1000, alert
    assert "no worker heard from" in alert["message"] and "sessionhub worker" in alert["message"], alert
    # A worker heard from lately, and still they wait: too few, or stalled.
    await quick.services.jobs.heard_from("busy-worker")
    [alert] = await job_alerts(quick, "jobs_waiting")
    assert alert["workers"] == 1 and "too few" in alert["message"], alert
    # Taken up and done: nothing waits.
    await drain(make_worker(quick), quick)
    assert await job_alerts(quick, "jobs_waiting", present=False) == []


async def test_a_job_held_by_a_silent_worker_is_said_so_not_running(quick: ServerUnderTest) -> None:
    session_id = await quick.create_session("alice")
    await quick.services.jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    await quick.services.jobs.ensure_group()
    # Taken by a worker that then died (no heartbeat renews its claim).
    [taken] = await quick.services.jobs.claim("killed-worker", count=1, block_ms=1, visibility_ms=60_000)
    assert taken.job.session_id == session_id
    [alert] = await job_alerts(quick, "jobs_stuck")
    assert "killed-worker" in alert["message"] and "no heartbeat" in alert["message"], alert
    assert "running" not in alert["message"], alert
    # Held, it is no job waiting for a worker.
    assert await job_alerts(quick, "jobs_waiting", present=False) == []
