"""A queued job is said to its session before a worker takes it up, and a failure is told in
words meant for people (audit "jobsreal").

With every worker busy or none running, nothing was published after a Done until a worker's
first step: the page said "No jobs yet" and "Not processed yet", inviting a second press that
queued the same work again. And every tab watching a session was sent a processor's raw
exception text ("RuntimeError: …", which may name paths or hosts).
"""

from __future__ import annotations

from typing import Any

from handlers.voice.actions import announce_queued
from server.worker import UNEXPECTED_FAILURE
from storage.dead_letters import DeadLetters
from storage.jobs import Job
from tests.helpers import Client, ServerUnderTest
from tests.test_worker import drain, make_worker


async def test_a_done_says_its_job_is_queued_once_however_often_it_is_sent(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    press = {"session_id": session_id, "request_id": "press-queued-01"}
    first = await watcher.call("session_done", press)
    again = await watcher.call("session_done", press)  # its ack lost: sent again, the same press
    assert first["ok"] and again["repeated"] is True and again["job_id"] == first["job_id"]
    await watcher.wait_for(lambda: bool(watcher.named("job_progress")))
    process = await watcher.call("post_process_session", {"session_id": session_id, "request_id": "press-proc-01"})
    await watcher.wait_for(lambda: len(watcher.named("job_progress")) == 2)
    said = [(e["data"]["job_id"], e["data"]["step"]) for e in watcher.named("job_progress")]
    assert said == [(first["job_id"], "queued"), (process["job_id"], "queued")], said
    session = await server.services.voice.get(session_id)
    assert session is not None and session.last_job is not None
    assert (session.last_job["job_id"], session.last_job["step"]) == (process["job_id"], "queued")
    # A worker's steps come after it and replace it.
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: len(watcher.named("job_result")) == 2)
    session = await server.services.voice.get(session_id)
    assert session is not None and session.last_job is not None and session.last_job["status"] == "succeeded"


async def test_a_job_a_worker_has_said_more_of_is_not_said_queued_again(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """Announced after it is queued, a job may be taken up (and said to be transcribed, or done)
    first: the announcement then says nothing, rather than put the page back to "waiting"."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    job = Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice")
    await server.services.jobs.enqueue(job)
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    before = await server.services.voice.get(session_id)
    await announce_queued(server.services, job)  # late: the job ran meanwhile
    other = Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice")
    await announce_queued(server.services, other)  # another job's is said
    await watcher.wait_for(lambda: any(e["data"]["job_id"] == other.job_id for e in watcher.named("job_progress")))
    assert [e["data"]["job_id"] for e in watcher.named("job_progress") if e["data"]["step"] == "queued"] == [
        other.job_id
    ]
    after = await server.services.voice.get(session_id)
    assert before is not None and before.last_job is not None and before.last_job["status"] == "succeeded"
    assert after is not None and after.last_job is not None and after.last_job["job_id"] == other.job_id


async def test_a_processors_own_error_text_goes_to_the_operator_not_to_the_session(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    secret = "cannot open /srv/secret/models/x.bin on 10.0.0.7"

    async def broken(ctx: Any, job: Job) -> dict[str, Any]:
        raise RuntimeError(secret)

    await server.services.jobs.enqueue(Job(type="BROKEN", session_id=session_id, performer_id="alice"))
    await drain(make_worker(server, {"BROKEN": broken}, max_attempts=2), server, rounds=40)
    await watcher.wait_for(lambda: any(e["data"]["status"] == "failed" for e in watcher.named("job_result")))
    results = [e["data"] for e in watcher.named("job_result")]
    assert [r["status"] for r in results] == ["retrying", "failed"], results
    assert {r["error"] for r in results} == {UNEXPECTED_FAILURE}, results
    assert secret not in str(await server.services.voice.get(session_id))
    [dead] = await server.services.jobs.dead()
    assert dead.last_error == f"RuntimeError: {secret}"  # the operator's, whole


async def test_a_failure_that_came_first_is_not_put_back_to_waiting(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A job failed by a worker before its announcement got there (a type no processor runs: at
    once), and a dead letter queued again and failed again as fast: the page said "waiting" for
    good over "failed" (audit "verify47"). Only a failure from before a retry is replaced."""
    session_id = await server.create_session("alice")
    job = Job(type="NO_SUCH_TYPE", session_id=session_id, performer_id="alice")
    await server.services.jobs.enqueue(job)
    await drain(make_worker(server, {}), server)
    await announce_queued(server.services, job)  # late
    failed = await server.services.voice.get(session_id)
    assert failed is not None and failed.last_job is not None and failed.last_job["status"] == "failed"

    retried_at = server.services.clock.now_ms()
    assert failed.last_job["at"] <= retried_at
    services = server.services
    settled = await DeadLetters(redis=services.redis, keys=services.keys, clock=services.clock).retry(job.job_id)
    assert settled.letter is not None
    await drain(make_worker(server, {}), server)  # failed again at once
    again = await server.services.voice.get(session_id)
    assert again is not None and again.last_job is not None and again.last_job["status"] == "failed"
    await announce_queued(server.services, job, retried_at_ms=retried_at)  # late: nothing changes
    after = await server.services.voice.get(session_id)
    assert after is not None and after.last_job == again.last_job
