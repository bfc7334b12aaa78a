"""The job worker: outcomes published as events, retries with back-off, dead letters, reclaim."""

from __future__ import annotations

import asyncio
from typing import Any

from handlers.context import Services
from jobs.failures import RetryLater
from jobs.processors import BUILT_IN, load_processors, report_progress
from jobs.transcription import NOT_CONFIGURED
from server.worker import Worker
from protocol.errors import CodedError, ErrorCode
from storage.jobs import Job
from tests.helpers import Client, ServerUnderTest


def make_worker(server: ServerUnderTest, processors: dict[str, Any] | None = None, **kw: Any) -> Worker:
    options = {"max_attempts": 3, "backoff_base_ms": 1, "visibility_ms": 60_000, **kw}
    return Worker(
        services=server.services,
        processors=processors if processors is not None else dict(BUILT_IN),
        **options,
    )


async def drain(worker: Worker, server: ServerUnderTest, rounds: int = 20) -> None:
    """Run until a batch comes back empty (jobs are queued before this is called)."""
    await server.services.jobs.ensure_group()
    for _ in range(rounds):
        if not await worker.run_once(block_ms=1):
            return


async def test_done_job_runs_and_its_outcome_is_published(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    await server.services.voice.set_active("alice", session_id)
    ack = await watcher.call("session_done", {"session_id": session_id})
    assert await server.services.voice.active_id("alice") is None  # the Done cleared it at once
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    result = watcher.named("job_result")[0]["data"]
    assert result == {
        "job_id": ack["job_id"],
        "job_type": "DONE_MULTIPROMPT",
        "status": "succeeded",
        "attempts": 1,
        "result": {
            "done_count": 1,
            "active_session_cleared": False,  # nothing left to clear
            "chunk_count": 0,
            "audio_ms": 0,
            "task_count": 0,
            "transcription": NOT_CONFIGURED,
        },
    }
    assert await server.services.voice.active_id("alice") is None
    assert (await server.services.jobs.counts()) == {"queued": 0, "delayed": 0, "dead": 0}


async def test_a_done_job_leaves_the_session_chosen_again_after_the_done(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """The Done's job clears the performer's active pointer (seed 002) when it still names the
    session: it cleared one the person had chosen again after the Done (the bot's /session <id>),
    which seed 002 says changes only by explicit actions (audit "botflow"). A job queued by an
    older server (no change count in its payload) still clears it as before."""
    voice = server.services.voice
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    await voice.set_active("alice", session_id)
    await watcher.call("session_done", {"session_id": session_id})
    await voice.set_active("alice", session_id)  # chosen again, after the Done
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    assert watcher.named("job_result")[0]["data"]["result"]["active_session_cleared"] is False
    assert await voice.active_id("alice") == session_id
    await server.services.jobs.enqueue(
        Job(type="DONE_MULTIPROMPT", session_id=session_id, performer_id="alice", payload={"done_count": 1})
    )
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: len(watcher.named("job_result")) == 2)
    assert watcher.named("job_result")[1]["data"]["result"]["active_session_cleared"] is True
    assert await voice.active_id("alice") is None


async def test_post_process_records_a_summary(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    await watcher.call("session_done", {"session_id": session_id})
    await watcher.call("post_process_session", {"session_id": session_id})
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: len(watcher.named("job_result")) == 2)
    updates = [e["data"] for e in watcher.named("session_update") if "summary" in e["data"]]
    assert updates and updates[0]["summary"]["done_count"] == 1 and updates[0]["summary"]["events"] >= 3


async def test_tasks_from_chunks(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    for material_id, text in (("c1", "TODO: call Bob"), ("c2", "- [ ] book a room\nno task here")):
        material = {"material_id": material_id, "kind": "text", "text": text}
        await server.services.voice.add_material(session_id, material, max_count=10)
    await watcher.call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": ["c1", "c2", "c3"]})
    await drain(make_worker(server), server)
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    result = watcher.named("job_result")[0]["data"]["result"]
    assert [(t["chunk_id"], t["text"], t["status"]) for t in result["tasks"]] == [
        ("c1", "call Bob", "open"),
        ("c2", "book a room", "open"),
    ]
    assert result["missing"] == ["c3"]


async def test_failing_job_retries_then_is_dead_lettered(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    calls: list[int] = []

    async def flaky(ctx: Services, job: Job) -> dict[str, Any]:
        calls.append(job.attempts)
        raise RuntimeError("boom")

    await server.services.jobs.enqueue(Job(type="FLAKY", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"FLAKY": flaky}, max_attempts=3, backoff_base_ms=1)
    await server.services.jobs.ensure_group()
    for _ in range(200):
        await worker.run_once(block_ms=1)
        if (await server.services.jobs.counts())["dead"]:
            break
    assert calls == [0, 1, 2]
    dead = await server.services.jobs.dead()
    assert len(dead) == 1 and dead[0].attempts == 3 and dead[0].last_error == "RuntimeError: boom"
    await watcher.wait_for(lambda: len(watcher.named("job_result")) == 3)
    assert [e["data"]["status"] for e in watcher.named("job_result")] == ["retrying", "retrying", "failed"]
    assert [e["data"].get("retry_in_ms") for e in watcher.named("job_result")][:2] == [1, 2]


async def test_a_job_that_says_not_yet_waits_and_is_not_said_done(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A processor that must wait (Telegram's 429 retry_after) raises RetryLater: the job is
    parked with the payload it gives, runs again, counts no failed attempt (past max_attempts),
    and its session hears "retrying", never "succeeded" for a try that did nothing."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    seen: list[tuple[int, int]] = []

    async def patient(ctx: Services, job: Job) -> dict[str, Any]:
        tries = int(job.payload.get("tries", 0))
        seen.append((tries, job.attempts))
        if tries < 4:
            raise RetryLater("the service asked to wait", delay_ms=1, payload={"tries": tries + 1})
        return {"tries": tries}

    await server.services.jobs.enqueue(Job(type="PATIENT", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"PATIENT": patient}, max_attempts=2)
    await server.services.jobs.ensure_group()
    for _ in range(200):
        await worker.run_once(block_ms=1)
        if len(seen) == 5 and not any((await server.services.jobs.counts()).values()):
            break
    assert [tries for tries, _ in seen] == [0, 1, 2, 3, 4]  # 5 runs with max_attempts=2: none failed
    await watcher.wait_for(lambda: len(watcher.named("job_result")) == 5)
    results = [e["data"] for e in watcher.named("job_result")]
    assert [r["status"] for r in results] == ["retrying"] * 4 + ["succeeded"]
    assert results[0]["error"] == "the service asked to wait" and results[0]["retry_in_ms"] == 1
    assert results[4]["result"] == {"tries": 4}
    assert await server.services.jobs.dead() == []


async def test_unknown_job_type_goes_straight_to_dead_letters(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    await server.services.jobs.enqueue(Job(type="NOPE", session_id=session_id, performer_id="alice"))
    await drain(make_worker(server, {}), server, rounds=2)
    assert [j.type for j in await server.services.jobs.dead()] == ["NOPE"]


async def test_a_job_held_by_a_dead_worker_is_reclaimed(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    jobs = server.services.jobs
    await jobs.ensure_group()
    await jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    taken = await jobs.claim("crashed-worker", count=1, block_ms=1, visibility_ms=1000)
    assert len(taken) == 1  # ... and never acknowledged
    survivor = make_worker(server, visibility_ms=1, consumer="survivor")
    await asyncio.sleep(0.01)  # longer than the survivor's visibility timeout
    assert await survivor.run_once(block_ms=1) == 1
    assert (await jobs.counts())["queued"] == 0
    session = await server.services.voice.get(session_id)
    assert session is not None


async def _held_by_two_dead_workers(server: ServerUnderTest, clients: list[Client]) -> Client:
    """A POST_PROCESS_SESSION job of a new session that two workers took and died running; a
    client subscribed to the session (its job_result events)."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    jobs = server.services.jobs
    await jobs.ensure_group()
    await jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    await _die_running(server, ("crashed-worker", "crashed-again"), batch=1)
    return watcher


async def _die_running(server: ServerUnderTest, workers: tuple[str, ...], *, batch: int) -> None:
    """Each of ``workers`` takes a batch of ``batch`` queued jobs, starts the first, and dies."""
    jobs = server.services.jobs
    for crashed in workers:
        taken = await jobs.claim(crashed, count=batch, block_ms=1, visibility_ms=1)
        while not taken:  # reclaimed once idle longer than the visibility timeout
            taken = await jobs.claim(crashed, count=batch, block_ms=1, visibility_ms=1)
        assert len(taken) == batch
        await jobs.started(taken[0], crashed)


async def test_a_reclaimed_job_counts_the_attempt_its_dead_worker_made(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A job handed to a new worker after its first died holding it said ``"attempts": 1``, as
    if the first run had never started (a transcription it ran half-way included)."""
    watcher = await _held_by_two_dead_workers(server, clients)
    seen: list[int] = []

    async def records(ctx: Services, job: Job) -> dict[str, Any]:
        seen.append(job.attempts)
        raise RuntimeError("the disk is full")

    survivor = make_worker(server, {"POST_PROCESS_SESSION": records}, visibility_ms=1, max_attempts=4)
    while not await survivor.run_once(block_ms=1):
        pass
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    first = watcher.named("job_result")[0]["data"]
    assert (first["status"], first["attempts"]) == ("retrying", 3), first
    assert seen == [2]  # the two interrupted runs came before this one
    while not await survivor.run_once(block_ms=1):  # once its back-off has passed
        pass
    await watcher.wait_for(lambda: len(watcher.named("job_result")) == 2)
    last = watcher.named("job_result")[1]["data"]
    assert (last["status"], last["attempts"]) == ("failed", 4), last  # max_attempts counts them too
    assert seen == [2, 3]


async def _survivor_runs(server: ServerUnderTest, seen: list[int]) -> None:
    """A worker (max_attempts 2) takes one batch of what is queued or left by dead workers, and
    runs each job by noting the attempts it had."""

    async def records(ctx: Services, job: Job) -> dict[str, Any]:
        seen.append(job.attempts)
        return {}

    survivor = make_worker(server, {"POST_PROCESS_SESSION": records}, visibility_ms=1, max_attempts=2)
    while not await survivor.run_once(block_ms=1):
        pass


async def test_the_jobs_a_dead_workers_batch_never_reached_have_made_no_attempt(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A worker takes jobs in batches. Counted by Redis's deliveries, the jobs of a dead worker's
    batch still waiting their turn counted as attempts made, as the job that was running did: two
    dead workers, and each of them came with two attempts used, one failure from the dead letters
    with the default limits of a test (audit "verify43"). Only runs that started count."""
    sessions = [await server.create_session("alice") for _ in range(3)]
    jobs = server.services.jobs
    await jobs.ensure_group()
    for session_id in sessions:
        await jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    await _die_running(server, ("crashed-worker", "crashed-again"), batch=3)  # the first job, twice
    ran: list[tuple[str, int]] = []

    async def records(ctx: Services, job: Job) -> dict[str, Any]:
        ran.append((job.session_id, job.attempts))
        return {}

    survivor = make_worker(server, {"POST_PROCESS_SESSION": records}, visibility_ms=1, max_attempts=2)
    while not await survivor.run_once(block_ms=1):
        pass
    # The first was started twice; the others never ran: no attempt made.
    assert ran == [(sessions[0], 2), (sessions[1], 0), (sessions[2], 0)], ran
    assert await jobs.counts() == {"queued": 0, "delayed": 0, "dead": 0}


async def test_a_run_stopped_with_its_worker_on_purpose_is_not_counted(server: ServerUnderTest) -> None:
    """A worker stopping (SIGTERM, a deploy) leaves its running job to another worker. Counted as
    an interrupted run, a long job caught by a few deploys was dead-lettered unrun, as one that
    kills its worker."""
    session_id = await server.create_session("alice")
    jobs = server.services.jobs
    await jobs.ensure_group()
    await jobs.enqueue(Job(type="POST_PROCESS_SESSION", session_id=session_id, performer_id="alice"))
    running = asyncio.Event()
    seen: list[int] = []

    async def long_job(ctx: Services, job: Job) -> dict[str, Any]:
        seen.append(job.attempts)
        running.set()
        await asyncio.Event().wait()  # until cancelled
        return {}

    for _ in range(2):  # two deploys, each during the job
        running.clear()
        stopping = make_worker(server, {"POST_PROCESS_SESSION": long_job}, visibility_ms=1, max_attempts=2)
        task = asyncio.create_task(stopping.run(asyncio.Event(), block_ms=1))
        await asyncio.wait_for(running.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await _survivor_runs(server, seen)
    assert seen == [0, 0, 0], seen  # run each time, and never as a run its job cut short
    assert await jobs.counts() == {"queued": 0, "delayed": 0, "dead": 0}


# How long a run's worker must be silent to be dead, in the tests below (30 s by default).
SILENCE_MS = 300


async def _silent_for(server: ServerUnderTest, consumers: tuple[str, ...], ms: int) -> None:
    """Until each of ``consumers`` has not been heard from for ``ms`` (bounded)."""
    alive = server.services.keys.jobs_alive()
    async with asyncio.timeout(10):
        while True:
            marks = await server.services.redis.hmget(alive, list(consumers))
            assert all(marks), marks  # each was heard from as it claimed the job
            if all(server.services.clock.now_ms() - int(at) >= ms for at in marks):
                return
            await asyncio.sleep(0.02)


async def _reachable_for(worker: Worker, ms: int) -> None:
    """Until ``worker`` has reached Redis for ``ms`` (it has since it was made, without a failure)."""
    async with asyncio.timeout(10):
        while not worker.reachable_for_ms() >= ms:
            await asyncio.sleep(0.02)


async def test_a_job_whose_workers_died_running_it_is_dead_lettered_unrun(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A job that kills its worker (the process crashes, runs out of memory) was taken up by the
    next worker, which it killed too, and so on for as long as it was queued: node after node
    down, every other job with them (audit "botflow" 1). Once its workers died during
    ``max_attempts`` of its runs it is dead-lettered, unrun, and its session is told."""
    survivor = make_worker(
        server, {"POST_PROCESS_SESSION": _never_run}, visibility_ms=1, max_attempts=2, death_silence_ms=SILENCE_MS
    )
    watcher = await _held_by_two_dead_workers(server, clients)
    await _silent_for(server, ("crashed-worker", "crashed-again"), SILENCE_MS)
    await _reachable_for(survivor, SILENCE_MS)
    while not await survivor.run_once(block_ms=1):
        pass
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    [result] = [event["data"] for event in watcher.named("job_result")]
    assert (result["status"], result["attempts"]) == ("failed", 2), result
    assert "its worker stopped (killed, or out of memory) during each of 2 runs" in result["error"], result
    jobs = server.services.jobs
    assert await jobs.counts() == {"queued": 0, "delayed": 0, "dead": 1}
    [dead] = await jobs.dead()
    assert dead.attempts == 2 and dead.last_error == result["error"]


async def _never_run(ctx: Services, job: Job) -> dict[str, Any]:
    raise AssertionError("a job whose workers died running it was run again")


async def test_a_run_whose_worker_lost_its_claim_alive_is_no_death(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A worker stalled past the visibility timeout (or cut off from Redis for a while) loses its
    claim, and the job is run by another: that run is no death once the worker is heard from
    again. Counted as one, such a job was dead-lettered unrun (audit "verify44")."""
    ran: list[int] = []

    async def records(ctx: Services, job: Job) -> dict[str, Any]:
        ran.append(job.attempts)
        return {}

    survivor = make_worker(
        server, {"POST_PROCESS_SESSION": records}, visibility_ms=1, max_attempts=2, death_silence_ms=SILENCE_MS
    )
    await _held_by_two_dead_workers(server, clients)
    await _silent_for(server, ("crashed-worker", "crashed-again"), SILENCE_MS)
    await _reachable_for(survivor, SILENCE_MS)
    # The second worker was only stalled: it reads the group again (and finds nothing new).
    assert await server.services.jobs.claim("crashed-again", count=1, block_ms=1, visibility_ms=600_000) == []
    while not await survivor.run_once(block_ms=1):
        pass
    assert ran == [2]  # run, its two interrupted runs counted as attempts
    assert await server.services.jobs.counts() == {"queued": 0, "delayed": 0, "dead": 0}


async def test_a_worker_just_back_does_not_call_the_silence_of_others_a_death(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A worker that has not reached Redis for as long as the silence that makes a death (it just
    started, or Redis was just away: every live worker was silent then too) runs the job."""
    ran: list[int] = []

    async def records(ctx: Services, job: Job) -> dict[str, Any]:
        ran.append(job.attempts)
        return {}

    await _held_by_two_dead_workers(server, clients)
    silence_ms = 2000  # far longer than the few ms from the survivor's start to its look
    await _silent_for(server, ("crashed-worker", "crashed-again"), silence_ms)
    survivor = make_worker(
        server, {"POST_PROCESS_SESSION": records}, visibility_ms=1, max_attempts=2, death_silence_ms=silence_ms
    )
    while not await survivor.run_once(block_ms=1):
        pass
    assert survivor.reachable_for_ms() < silence_ms  # else this test says nothing
    assert ran == [2]
    assert await server.services.jobs.counts() == {"queued": 0, "delayed": 0, "dead": 0}


def test_processors_can_be_plugged_in() -> None:
    processors = load_processors("tests.test_worker:_extra_processors")
    assert set(processors) == set(BUILT_IN) | {"EXTRA"}


def _extra_processors() -> dict[str, Any]:
    async def extra(ctx: Services, job: Job) -> dict[str, Any]:
        return {}

    return {"EXTRA": extra}


async def test_a_hanging_processor_is_cancelled_and_retried(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    started: list[int] = []
    cancelled: list[int] = []

    async def hangs_once(ctx: Services, job: Job) -> dict[str, Any]:
        started.append(job.attempts)
        if job.attempts == 0:
            try:
                await asyncio.Event().wait()  # a stuck call: never returns by itself
            except asyncio.CancelledError:
                cancelled.append(job.attempts)
                raise
        return {"ok": True}

    await server.services.jobs.enqueue(Job(type="HANGS", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"HANGS": hangs_once}, timeout_s=0.3, backoff_base_ms=1)
    await server.services.jobs.ensure_group()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while len(watcher.named("job_result")) < 2 and loop.time() < deadline:
        await asyncio.wait_for(worker.run_once(block_ms=1), 2)  # before the time limit this hung forever
        await asyncio.sleep(0.01)
    assert started == [0, 1] and cancelled == [0]
    results = [e["data"] for e in watcher.named("job_result")]
    assert [r["status"] for r in results] == ["retrying", "succeeded"]
    said = "JobTimeout: the processor ran longer than 0.3 s without a progress step and was cancelled"
    assert results[0]["error"] == said
    assert (await server.services.jobs.counts()) == {"queued": 0, "delayed": 0, "dead": 0}


async def test_a_long_job_that_reports_progress_is_not_cut_at_the_time_limit(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """The limit covered the whole job: a long recording's processing, transcribed chunk by chunk,
    was cut at it while getting on, every attempt, and dead-lettered half done (audit "botflow").
    It now counts from the last progress step."""
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    steps: list[int] = []

    async def long_but_getting_on(ctx: Services, job: Job) -> dict[str, Any]:
        for step in range(5):  # 2 s in all, each step well within the 1 s limit
            await asyncio.sleep(0.4)
            report_progress()
            steps.append(step)
        return {"steps": len(steps)}

    await server.services.jobs.enqueue(Job(type="LONG", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"LONG": long_but_getting_on}, timeout_s=1.0)
    await drain(worker, server)
    await watcher.wait_for(lambda: bool(watcher.named("job_result")))
    [result] = [e["data"] for e in watcher.named("job_result")]
    assert (result["status"], result["attempts"], result["result"]) == ("succeeded", 1, {"steps": 5}), result


async def test_jobs_longer_than_the_visibility_timeout_run_once(server: ServerUnderTest) -> None:
    """Two workers with a 900 ms visibility timeout and two jobs that work for 1.2 s each.

    Both jobs are queued before the workers start, so the first worker claims both in one batch:
    the second waits its turn there and must not be reclaimed meanwhile either. (A heartbeat
    every 300 ms may be 600 ms late before a reclaim is possible: with 300 ms, one busy moment
    of a loaded machine had the job reclaimed, as designed for a worker that is that late.)
    """
    session_id = await server.create_session("alice")
    starts: list[tuple[str, str]] = []

    def slow(consumer: str) -> Any:
        async def run(ctx: Services, job: Job) -> dict[str, Any]:
            starts.append((consumer, job.payload["n"]))
            await asyncio.sleep(1.2)
            return {}

        return run

    for n in ("first", "second"):
        job = Job(type="SLOW", session_id=session_id, performer_id="alice", payload={"n": n})
        await server.services.jobs.enqueue(job)
    workers = [make_worker(server, {"SLOW": slow(name)}, visibility_ms=900, consumer=name) for name in ("w1", "w2")]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop, block_ms=20)) for w in workers]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while (await server.services.jobs.counts())["queued"] and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.8)  # two visibility timeouts more: a reclaim would have started one again
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(n for _, n in starts) == ["first", "second"], f"starts: {starts}"
    assert (await server.services.jobs.counts()) == {"queued": 0, "delayed": 0, "dead": 0}


async def test_a_job_taken_over_by_another_worker_is_dropped_not_finished(server: ServerUnderTest) -> None:
    """If a heartbeat comes too late and another worker has the job, the first stops and stores nothing."""
    session_id = await server.create_session("alice")
    jobs, keys, redis = server.services.jobs, server.services.keys, server.services.redis
    cancelled = asyncio.Event()

    async def stuck(ctx: Services, job: Job) -> dict[str, Any]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    await jobs.enqueue(Job(type="STUCK", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"STUCK": stuck}, visibility_ms=300, consumer="slowpoke")
    await jobs.ensure_group()
    running = asyncio.create_task(worker.run_once(block_ms=1))
    await asyncio.sleep(0.05)
    [entry] = await redis.xpending_range(keys.jobs(), keys.jobs_group(), "-", "+", 10)
    # What XAUTOCLAIM does for a worker whose heartbeat stalled past the visibility timeout.
    await redis.xclaim(keys.jobs(), keys.jobs_group(), "thief", 0, [entry["message_id"]], justid=True)
    assert await asyncio.wait_for(running, 2) == 1
    assert cancelled.is_set()
    [after] = await redis.xpending_range(keys.jobs(), keys.jobs_group(), "-", "+", 10)
    assert after["consumer"] == "thief"  # not acknowledged, not retried: the thief's to finish
    assert (await jobs.counts()) == {"queued": 1, "delayed": 0, "dead": 0}


async def test_a_worker_makes_its_group_again_when_redis_comes_back_without_it(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """A Redis that comes back without the job stream's consumer group (restarted without
    persistence, lost its last second, a failover to a replica that never had the group): a
    running worker makes the group again and runs the jobs queued since, without a restart."""
    worker = make_worker(server)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop, block_ms=50))
    try:
        first = await server.subscriber(clients, await server.create_session("alice"))
        await first.call("session_done", {"session_id": first.named("session_snapshot")[0]["session_id"]})
        await first.wait_for(lambda: bool(first.named("job_result")), timeout=10)
        await redis.delete(server.services.keys.jobs())  # the stream and its group are gone
        session_id = await server.create_session("alice")
        second = await server.subscriber(clients, session_id)
        ack = await second.call("session_done", {"session_id": session_id})
        assert ack["ok"] is True, ack
        await second.wait_for(lambda: bool(second.named("job_result")), timeout=10)
        assert second.named("job_result")[0]["data"]["status"] == "succeeded"
    finally:
        stop.set()
        await running


async def test_a_stopping_worker_forgets_its_consumer_and_a_starting_one_those_long_idle(
    server: ServerUnderTest,
) -> None:
    """Every process that took a job left its consumer in the group for good: 1,000 restarts,
    1,000 dead workers in XINFO CONSUMERS (audit "retention"). A stopping worker forgets its own,
    and a starting one those idle past the bound; one still holding a job is kept."""
    jobs = server.services.jobs
    await jobs.ensure_group()
    # A killed process that holds a job (its consumer keeps it), and one that held none.
    await jobs.enqueue(Job(type="NOPE", session_id="x", performer_id="alice"))
    assert await jobs.claim("killed-holding", count=1, block_ms=1, visibility_ms=60_000)
    keys = server.services.keys
    await server.services.redis.xgroup_createconsumer(keys.jobs(), keys.jobs_group(), "killed-idle")
    assert await consumers(server) == {"killed-holding", "killed-idle"}
    assert await jobs.retire(None, idle_ms=0) == 1  # idle and holding nothing: forgotten
    assert await consumers(server) == {"killed-holding"}

    stop = asyncio.Event()
    worker = make_worker(server, processors={})
    running = asyncio.create_task(worker.run(stop, block_ms=10))
    await jobs.enqueue(Job(type="NOPE", session_id="y", performer_id="alice"))
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while worker.consumer not in await consumers(server):  # it has taken the job (7.0 makes a
            # consumer only then)
            assert asyncio.get_running_loop().time() < deadline, await consumers(server)
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await running
    assert await consumers(server) == {"killed-holding"}  # its own gone; the holder kept


async def test_a_worker_cancelled_as_it_stops_is_no_longer_counted_as_running(server: ServerUnderTest) -> None:
    """`sessionhub worker` on SIGTERM cancels its run (to take back a job it runs): its alive mark
    stayed, and `jobs_waiting` said "1 worker(s) heard from: too few" for a minute with none
    running (audit "verify47")."""
    jobs = server.services.jobs
    for stopped in (True, False):  # as `sessionhub worker` stops it (stop set, then cancelled); cancelled alone
        worker = make_worker(server, processors={})
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop, block_ms=10))
        deadline = asyncio.get_running_loop().time() + 15
        while worker.consumer not in await jobs.workers():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        if stopped:
            stop.set()
        running.cancel()
        async with asyncio.timeout(10):  # a cancellation a call swallowed ended it too
            await asyncio.gather(running, return_exceptions=True)
        assert worker.consumer not in await jobs.workers()


async def consumers(server: ServerUnderTest) -> set[str]:
    found: list[dict[str, Any]] = await server.services.redis.xinfo_consumers(
        server.services.keys.jobs(), server.services.keys.jobs_group()
    )
    return {str(c["name"]) for c in found}


async def test_a_job_failed_by_a_store_away_is_tried_past_its_attempts_until_it_is_old(
    server: ServerUnderTest,
) -> None:
    """An S3 outage of 15 s dead-lettered a Done's processing for good: five attempts in 15 s, and
    nothing runs a dead letter again (audit "s3field"). A store away (``unavailable``, Redis or a
    disk failing) is not the job's fault: it is tried on, no more than five minutes apart, until
    it is a day old."""
    session_id = await server.create_session("alice")
    away = 6  # twice the attempts' limit
    calls: list[int] = []

    async def uploads(ctx: Services, job: Job) -> dict[str, Any]:
        calls.append(job.attempts)
        if len(calls) <= away:
            raise CodedError(ErrorCode.UNAVAILABLE, "the blob store does not answer")
        return {"done": True}

    jobs = server.services.jobs
    await jobs.enqueue(Job(type="UPLOADS", session_id=session_id, performer_id="alice"))
    worker = make_worker(server, {"UPLOADS": uploads}, max_attempts=3, backoff_base_ms=1)
    await jobs.ensure_group()
    for _ in range(400):
        await worker.run_once(block_ms=1)
        if len(calls) > away:
            break
    assert calls == list(range(away + 1)) and (await jobs.counts())["dead"] == 0

    # A day on, the same outage gives it up at its limit: not tried for ever.
    calls.clear()
    await jobs.enqueue(Job(type="UPLOADS", session_id=session_id, performer_id="alice"))
    server.services.clock.shift_ms += 25 * 3600 * 1000
    for _ in range(200):
        await worker.run_once(block_ms=1)
        if (await jobs.counts())["dead"]:
            break
    assert calls == [0, 1, 2]
    [dead] = await jobs.dead()
    assert dead.attempts == 3 and "blob store" in dead.last_error
