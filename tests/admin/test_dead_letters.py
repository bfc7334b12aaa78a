"""The dead-letter list for an operator: ``/admin/jobs/dead`` (list, retry, discard, discard all)
against a real Redis and a real worker, with the hostile presses next to the happy ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from auth.claims import Permission
from handlers.context import Services
from server.settings import Settings
from storage.jobs import Job
from tests.admin.test_cli import cli
from tests.admin.test_http import admin_token, call
from tests.conftest import start_server
from tests.helpers import CHILD_TEST_TIMEOUT_S, ServerUnderTest
from tests.test_worker import drain, make_worker

DEAD = "/admin/jobs/dead"
ACTIONS_PER_MIN = Settings.model_fields["admin_actions_per_min"].default  # the servers under test keep it
NEVER = "6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b"


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def bury(server: ServerUnderTest, *types: str, session_id: str = "") -> list[Job]:
    """Jobs of ``types`` dead-lettered the way a worker does it: no processor for their type."""
    session_id = session_id or await server.create_session("alice")
    queued = [
        await server.services.jobs.enqueue(Job(type=kind, session_id=session_id, performer_id="alice"))
        for kind in types
    ]
    await drain(make_worker(server, {}), server, rounds=len(types) + 2)
    dead = {job.job_id for job in await server.services.jobs.dead(limit=1000)}
    assert {job.job_id for job in queued} <= dead
    return queued


async def dead_ids(server: ServerUnderTest) -> list[str]:
    return [job.job_id for job in await server.services.jobs.dead(limit=1000)]


async def queued_jobs(server: ServerUnderTest) -> list[Job]:
    entries: Any = await server.services.redis.xrange(server.services.keys.jobs())
    return [Job.from_json(fields["job"]) for _, fields in entries]


async def audit_actions(server: ServerUnderTest) -> list[str]:
    entries: Any = await server.services.redis.xrevrange(server.services.keys.admin_audit())
    return [fields["action"] for _, fields in entries]


async def test_the_list_pages_newest_first_with_every_field(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    jobs = await bury(server, "A", "B", "C")
    token = admin_token(server)
    status, page = await call(http, "GET", DEAD, token, limit=2)
    assert status == 200, page
    assert page["total"] == 3 and page["next_offset"] == 2 and page["alert_at"] == 1
    assert [row["type"] for row in page["dead_letters"]] == ["C", "B"]  # the newest first
    first = page["dead_letters"][0]
    assert first["job_id"] == jobs[2].job_id and first["session_id"] == jobs[2].session_id
    assert first["performer_id"] == "alice" and first["attempts"] == 1 and first["enqueued_at"] > 0
    assert "no processor for job type 'C'" in first["last_error"]
    status, rest = await call(http, "GET", DEAD, token, limit=2, offset=2)
    assert status == 200 and [row["type"] for row in rest["dead_letters"]] == ["A"] and rest["next_offset"] is None
    status, beyond = await call(http, "GET", DEAD, token, offset=50)
    assert status == 200 and beyond["dead_letters"] == [] and beyond["next_offset"] is None


@pytest.mark.parametrize(
    "query",
    [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1}, {"offset": 10_001}, {"limit": "1.5"}],
)
async def test_a_bad_page_query_is_refused(server: ServerUnderTest, http: aiohttp.ClientSession, query: Any) -> None:
    status, answer = await call(http, "GET", DEAD, admin_token(server), **query)
    assert (status, answer["error"]) == (400, "invalid_payload"), answer


async def test_a_retry_queues_the_job_again_and_a_real_worker_runs_it(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    (job,) = await bury(server, "FLAKY")
    ran: list[Job] = []
    done = asyncio.Event()

    async def fixed(ctx: Services, run: Job) -> dict[str, Any]:
        ran.append(run)
        done.set()
        return {}

    failed = await server.services.voice.get(job.session_id)
    assert failed is not None and failed.last_job is not None and failed.last_job["status"] == "failed"
    status, answer = await call(http, "POST", f"{DEAD}/{job.job_id.upper()}/retry", admin_token(server))
    assert status == 200, answer
    assert answer == {"job_id": job.job_id, "outcome": "retried", "again": False}
    assert await dead_ids(server) == []
    # Its session's pages are told it waits again (the same job id, which had failed).
    waiting = await server.services.voice.get(job.session_id)
    assert waiting is not None and waiting.last_job is not None
    assert (waiting.last_job["job_id"], waiting.last_job["step"]) == (job.job_id, "queued"), waiting.last_job
    (queued,) = await queued_jobs(server)
    assert (queued.job_id, queued.attempts, queued.last_error) == (job.job_id, 0, "")
    assert queued.payload == job.payload and queued.session_id == job.session_id
    worker = make_worker(server, {"FLAKY": fixed})
    await server.services.jobs.ensure_group()
    async with asyncio.timeout(10):
        while not done.is_set():
            await worker.run_once(block_ms=50)
    assert [(run.job_id, run.attempts) for run in ran] == [(job.job_id, 0)]
    assert await dead_ids(server) == []
    assert (await audit_actions(server))[0] == "retry_dead_letter"


async def test_a_retry_pressed_twice_queues_once_and_answers_success_again(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    (job,) = await bury(server, "TWICE")
    token = admin_token(server)
    answers = await asyncio.gather(*(call(http, "POST", f"{DEAD}/{job.job_id}/retry", token) for _ in range(2)))
    assert sorted(answer["again"] for status, answer in answers if status == 200) == [False, True], answers
    status, again = await call(http, "POST", f"{DEAD}/{job.job_id}/retry", token)
    assert (status, again) == (200, {"job_id": job.job_id, "outcome": "retried", "again": True})
    assert [queued.job_id for queued in await queued_jobs(server)] == [job.job_id]
    assert (await audit_actions(server)).count("retry_dead_letter") == 1
    # Discarding it now finds it settled already: success, nothing changed.
    status, late = await call(http, "DELETE", f"{DEAD}/{job.job_id}", token)
    assert (status, late) == (200, {"job_id": job.job_id, "outcome": "retried", "again": True})
    assert len(await queued_jobs(server)) == 1


async def test_a_job_retried_and_buried_again_can_be_retried_again(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    (job,) = await bury(server, "AGAIN")
    token = admin_token(server)
    assert (await call(http, "POST", f"{DEAD}/{job.job_id}/retry", token))[0] == 200
    await drain(make_worker(server, {}), server, rounds=3)  # still no processor: buried again
    assert await dead_ids(server) == [job.job_id]
    status, answer = await call(http, "POST", f"{DEAD}/{job.job_id}/retry", token)
    assert (status, answer["again"]) == (200, False)
    assert await dead_ids(server) == []


async def test_discard_one_and_its_repeat(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    kept, dropped = await bury(server, "KEEP", "DROP")
    token = admin_token(server)
    status, answer = await call(http, "DELETE", f"{DEAD}/{dropped.job_id}", token)
    assert (status, answer) == (200, {"job_id": dropped.job_id, "outcome": "discarded", "again": False})
    assert await dead_ids(server) == [kept.job_id]
    status, answer = await call(http, "DELETE", f"{DEAD}/{dropped.job_id}", token)
    assert (status, answer["again"]) == (200, True)
    # A discarded job is not retried: refused, nothing queued.
    status, answer = await call(http, "POST", f"{DEAD}/{dropped.job_id}/retry", token)
    assert (status, answer["error"]) == (409, "conflict"), answer
    assert await queued_jobs(server) == [] and await dead_ids(server) == [kept.job_id]
    assert (await audit_actions(server)).count("discard_dead_letter") == 1


async def test_discard_all_needs_the_count_confirmed(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    await bury(server, "X", "Y")
    token = admin_token(server)
    status, answer = await call(http, "DELETE", DEAD, token)
    assert (status, answer["error"]) == (400, "invalid_payload"), answer
    status, answer = await call(http, "DELETE", DEAD, token, confirm=5)
    assert (status, answer["error"], answer["count"]) == (409, "conflict", 2), answer
    assert len(await dead_ids(server)) == 2
    status, answer = await call(http, "DELETE", DEAD, token, confirm=2)
    assert (status, answer) == (200, {"discarded": 2})
    assert await dead_ids(server) == []
    status, answer = await call(http, "DELETE", DEAD, token, confirm=2)  # its answer lost, sent again
    assert (status, answer) == (200, {"discarded": 0})
    assert (await audit_actions(server)).count("discard_dead_letters") == 1


async def test_discard_all_refuses_a_list_that_changed_behind_the_same_count(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """The count alone was the confirmation: one operator discarded a letter while a new job died,
    and another's "Discard all 2" dropped the new one unseen, with nothing in the audit log to
    find it by (audit "adminhostile"). The newest entry as listed is confirmed too."""
    first, second = await bury(server, "SEEN_1", "SEEN_2")
    token = admin_token(server)
    status, page = await call(http, "GET", DEAD, token)
    assert status == 200 and page["total"] == 2 and len(page["newest"]) == 16, page
    assert (await call(http, "DELETE", f"{DEAD}/{first.job_id}", token))[0] == 200  # another operator
    (unseen,) = await bury(server, "UNSEEN")  # and a job that died meanwhile: two again
    status, answer = await call(http, "DELETE", DEAD, token, confirm=2, newest=page["newest"])
    assert (status, answer["error"], answer["count"]) == (409, "conflict", 2), answer
    assert answer["newest"] != page["newest"], answer
    assert await dead_ids(server) == [unseen.job_id, second.job_id]
    status, again = await call(http, "GET", DEAD, token)  # listed again, the new one seen
    assert again["newest"] == answer["newest"] and again["dead_letters"][0]["job_id"] == unseen.job_id
    status, answer = await call(http, "DELETE", DEAD, token, confirm=2, newest=again["newest"])
    assert (status, answer) == (200, {"discarded": 2})
    status, answer = await call(http, "DELETE", DEAD, token, confirm=2, newest="not-hex")
    assert (status, answer["error"]) == (400, "invalid_payload"), answer
    status, page = await call(http, "GET", DEAD, token)
    assert (page["total"], page["newest"]) == (0, "")


async def test_presses_that_change_nothing_leave_the_minutes_actions_alone(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """Thirty discard-alls refused for a wrong count, or presses answered ``again``, used up the
    operator's thirty actions a minute: the right discard-all was then refused 429 (audit
    "adminhostile"). Only a press that changes the list counts."""
    (kept, dropped) = await bury(server, "KEPT", "DROPPED")
    token = admin_token(server)
    assert (await call(http, "DELETE", f"{DEAD}/{dropped.job_id}", token))[0] == 200  # one action
    for _ in range(ACTIONS_PER_MIN + 5):
        status, answer = await call(http, "DELETE", DEAD, token, confirm=7)
        assert (status, answer["error"]) == (409, "conflict"), answer
        status, answer = await call(http, "DELETE", f"{DEAD}/{dropped.job_id}", token)
        assert (status, answer["again"]) == (200, True), answer
    status, answer = await call(http, "DELETE", DEAD, token, confirm=1)
    assert (status, answer) == (200, {"discarded": 1})
    assert await dead_ids(server) == [] and (await audit_actions(server)).count("discard_dead_letters") == 1
    assert kept.job_id not in await dead_ids(server)


async def test_bad_ids_and_unknown_ids_change_nothing(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    (job,) = await bury(server, "STAYS")
    token = admin_token(server)
    for bad in ("not-a-job", "1" * 37, "%00", f"{job.job_id}x"):
        for method, path in (("POST", f"{DEAD}/{bad}/retry"), ("DELETE", f"{DEAD}/{bad}")):
            status, answer = await call(http, method, path, token)
            assert (status, answer["error"]) == (400, "invalid_payload"), (method, path, answer)
    for method, path in (("POST", f"{DEAD}/{NEVER}/retry"), ("DELETE", f"{DEAD}/{NEVER}")):
        status, answer = await call(http, method, path, token)
        assert (status, answer["error"]) == (404, "not_found"), (method, path, answer)
    status, answer = await call(http, "POST", f"{DEAD}/{job.job_id}/retry", token, {"extra": 1})
    assert (status, answer["error"]) == (400, "invalid_payload"), answer
    assert await dead_ids(server) == [job.job_id] and await queued_jobs(server) == []
    assert await audit_actions(server) == []


async def test_only_admins_may(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    (job,) = await bury(server, "GUARDED")
    user = server.token("alice", perms=(Permission.READ_ALL, Permission.UPDATE, Permission.CREATE))
    requests = [
        ("GET", DEAD, {}),
        ("POST", f"{DEAD}/{job.job_id}/retry", {}),
        ("DELETE", f"{DEAD}/{job.job_id}", {}),
        ("DELETE", DEAD, {"confirm": 1}),
    ]
    for method, path, query in requests:
        status, answer = await call(http, method, path, None, **query)
        assert (status, answer["error"]) == (401, "unauthorized"), (method, path)
        status, answer = await call(http, method, path, user, **query)
        assert (status, answer["error"]) == (403, "forbidden"), (method, path)
    assert await dead_ids(server) == [job.job_id] and await queued_jobs(server) == []


async def test_the_alert_clears_once_the_list_is_under_its_threshold(
    redis: object, redis_process: Any, tmp_path: Path
) -> None:
    server = await start_server(redis_process.url, tmp_path, admin_dead_letter_alert=2)
    try:
        async with aiohttp.ClientSession(base_url=server.url) as http:
            first, _ = await bury(server, "ONE", "TWO")
            token = admin_token(server)

            async def raised() -> list[str]:
                status, answer = await call(http, "GET", "/admin/alerts", token)
                assert status == 200
                return [alert["message"] for alert in answer["alerts"] if alert["alert"] == "dead_letters"]

            (message,) = await raised()
            assert "Dead letters on /admin" in message and "sessionhub admin dead-letters" in message
            assert (await call(http, "DELETE", f"{DEAD}/{first.job_id}", token))[0] == 200
            assert await raised() == []
    finally:
        await server.stop()


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)
async def test_the_cli_lists_retries_and_discards(server: ServerUnderTest) -> None:
    retried, discarded, other = await bury(server, "R", "D", "O")
    token = admin_token(server)
    base = ("admin", "--url", server.url, "dead-letters")
    code, out, err = await cli(*base, token=token)
    assert code == 0, err
    assert [json.loads(line)["job_id"] for line in out.splitlines()] == [other.job_id, discarded.job_id, retried.job_id]
    assert "3 dead letter(s)" in err
    code, out, err = await cli(*base, "--retry", retried.job_id, token=token)
    assert code == 0 and json.loads(out)["outcome"] == "retried", err
    code, out, err = await cli(*base, "--discard", discarded.job_id, token=token)
    assert code == 0 and json.loads(out)["outcome"] == "discarded", err
    code, _, err = await cli(*base, "--discard", NEVER, token=token)
    assert code == 1 and "404" in err
    code, _, err = await cli(*base, "--discard-all", token=token)
    assert code == 2 and "--confirm" in err
    code, _, err = await cli(*base, "--discard-all", "--confirm", "7", token=token)
    assert code == 1 and "409" in err
    code, out, err = await cli(*base, token=token)  # the listing says how to discard what it listed
    assert code == 0, err
    [command] = [line for line in err.splitlines() if "--discard-all" in line]
    newest = command.rsplit("--newest ", 1)[1]
    code, _, err = await cli(*base, "--discard-all", "--confirm", "1", "--newest", "0" * 16, token=token)
    assert code == 1 and "409" in err
    code, out, err = await cli(*base, "--discard-all", "--confirm", "1", "--newest", newest, token=token)
    assert code == 0 and json.loads(out) == {"discarded": 1}, err
    assert await dead_ids(server) == [] and [job.job_id for job in await queued_jobs(server)] == [retried.job_id]


async def test_each_dead_letter_says_when_it_was_buried(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    """The list said when a job's last attempt was queued, not when it failed for good: an
    operator could not tell a failure of this morning from one of last month."""
    before = server.services.clock.now_ms()
    (job,) = await bury(server, "WHEN")
    after = server.services.clock.now_ms()
    older = Job(type="OLD", session_id="", performer_id="alice").to_json()
    await server.services.redis.rpush(server.services.keys.jobs_dead(), older)  # buried by a release before
    status, page = await call(http, "GET", DEAD, admin_token(server))
    assert status == 200, page
    buried = {letter["type"]: letter["buried_at"] for letter in page["dead_letters"]}
    assert before <= buried["WHEN"] <= after and buried["OLD"] is None, buried
    assert page["dead_letters"][0]["job_id"] == job.job_id
