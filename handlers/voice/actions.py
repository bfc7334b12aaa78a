"""Voice-session actions shared by the Socket.IO events, the REST routes and the bot."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from auth.access import require_permission
from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.voice.access import performer
from handlers.rate_limit import created_today, within
from protocol.errors import CodedError, ErrorCode
from protocol.events import JOB_PROGRESS
from storage.failures import REDIS_AWAY
from storage.jobs import Job
from storage.voice.repository import KEEP_LAST_JOB, VoiceSession

log = logging.getLogger(__name__)

# What a queued job's announcement may meet: its session deleted meanwhile, Redis away.
UNANNOUNCED: tuple[type[Exception], ...] = (CodedError, *REDIS_AWAY)

DONE_MULTIPROMPT = "DONE_MULTIPROMPT"
# A Done job's payload field: the user's active pointer's change count right after the Done.
ACTIVE_SEQ_FIELD = "active_seq"
POST_PROCESS_SESSION = "POST_PROCESS_SESSION"
CREATE_TASKS_FROM_CHUNKS = "CREATE_TASKS_FROM_CHUNKS"
# The job_progress step of a job queued and not yet taken up by a worker.
JOB_QUEUED_STEP = "queued"


def job_for(kind: str, claims: Claims, session_id: str, payload: dict[str, Any], *, job_id: str = "") -> Job:
    """A job on behalf of the performer; its telegram id comes from the verified token only."""
    job = Job(
        type=kind,
        session_id=session_id,
        performer_id=claims.sub,
        telegram_user_id=claims.telegram_user_id,
        payload=payload,
    )
    return replace(job, job_id=job_id) if job_id else job


# The namespace of the job ids a press with a request_id names (uuid5 over the press).
_PRESS_JOBS = uuid.UUID("5b0f3c1e-8d0a-4c57-9a3e-6f1f2a7c9e40")


def press_job_id(session_id: str, action: str, user_id: str, request_id: str) -> str:
    """The id of the job one press queues: the same for every resend of a ``request_id``, a
    new random one without.

    The press's answer (with the job id it gave) lives in the session's hash slot and the job
    queue in ``{jobs}``: on a Redis Cluster whose session shard failed over to a replica that
    lost the first try's answer, the job stayed queued, and a resend given a new id queued a
    second (``JobQueue.enqueue_once`` goes by the id). Named by the press, it is the same job.
    """
    if not request_id:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_PRESS_JOBS, f"{session_id}|{action}|{user_id}|{request_id}"))


def session_url(services: Services, session_id: str) -> str:
    """Canonical link of a voice session page (absolute when a public URL is set)."""
    return f"{services.public_url.rstrip('/')}/session/{session_id}"


def brief(services: Services, session: VoiceSession) -> dict[str, Any]:
    """The short session shape of seed 002's REST answers."""
    return {
        "session_id": session.id,
        "session_name": session.name,
        "is_active": session.is_active,
        "url": session_url(services, session.id),
    }


async def create_active(
    services: Services, claims: Claims, name: str, *, address: str, session_id: str | None = None
) -> VoiceSession:
    """Create a session owned by the performer and make it their active session.

    Limited per user and per client ``address`` per minute, and per ``address`` per UTC day in
    the cap every kind of session shares: guest tokens are cheap (one address gets
    ``guests_per_min`` of them), so a per-user limit alone multiplies by the guests one makes, and
    a voice session is kept with no TTL, so a minute's limit alone let one address keep ~43,000
    new sessions a day.

    ``session_id`` is a keyed request's derived id (handlers/idempotency.py): when a run of it
    before (its node killed before the answer was kept) made the session, that session is the
    answer, made active again if still open, and nothing is counted twice.
    """
    require_permission(claims, Permission.CREATE)
    made = await services.voice.get(session_id) if session_id else None
    if made is not None and made.owner_id == claims.sub:
        if made.is_active:
            await services.voice.set_active(claims.sub, made.id)
        return made
    await services.storage_guard.admit("voice_create")
    limits = services.limits
    await within(
        services.limiter,
        "create",
        claims.sub,
        limit=limits.creates_per_min,
        window_s=60,
        message="too many sessions created; wait a minute",
    )
    await within(
        services.limiter,
        "create-addr",
        address,
        limit=limits.creates_per_min_per_address,
        window_s=60,
        message="too many sessions created from this address; wait a minute",
    )
    async with created_today(services.limiter, address, limit=limits.creates_per_day, guest=claims.guest):
        session = await services.voice.create(
            owner_id=claims.sub, telegram_user_id=claims.telegram_user_id, name=name, session_id=session_id
        )
    await services.voice.set_active(claims.sub, session.id)
    return session


# Jobs one user may queue per minute (done, post_process_session, create_tasks_from_chunks): the
# worker pool is shared, so one user's loop of requests must not bury everyone's jobs.
JOBS_PER_MIN = 30


async def admit_job(services: Services, claims: Claims, address: str) -> None:
    """Count one job for the user, or ``rate_limited`` past :data:`JOBS_PER_MIN`; a guest's
    also for its ``address``, past ``jobs_per_min_per_address``: guest tokens are free to mint,
    so the per-user limit alone let one address queue 30 jobs a minute per guest (a thousand
    guests: 30,000 a minute, past the queue's 100,000 entries, whose trim drops the oldest
    jobs, everyone's, in minutes)."""
    await within(
        services.limiter,
        "jobs",
        claims.sub,
        limit=JOBS_PER_MIN,
        window_s=60,
        message=f"at most {JOBS_PER_MIN} jobs a minute; wait",
    )
    if claims.guest:
        per_address = services.limits.jobs_per_min_per_address
        await within(
            services.limiter,
            "jobs-addr",
            address,
            limit=per_address,
            window_s=60,
            message=f"at most {per_address} jobs a minute from this address; wait",
        )


async def admit_press(
    services: Services, claims: Claims, session_id: str, action: str, request_id: str, *, address: str
) -> None:
    """:func:`admit_job`, except for a resend of a press already answered: its job was counted
    with it, and a resend refused ``rate_limited`` would leave a press that happened looking
    refused (a page resends an unanswered press until it is answered)."""
    try:
        await admit_job(services, claims, address)
    except CodedError as exc:
        if not (
            request_id
            and exc.code is ErrorCode.RATE_LIMITED
            and await services.voice.answered(session_id, action, claims.sub, request_id)
        ):
            raise


async def close(
    services: Services, claims: Claims, session_id: str, *, request_id: str = "", address: str
) -> dict[str, Any]:
    """Done: close the session (repeat allowed), clear the performer's pointer, queue the job.

    A resend of one press (the same ``request_id``: a lost ack, a page resending once it is
    connected again, a chat update redelivered) is answered with that press's done_count and
    job id and counts nothing: the close script decides it in its one step. Its job is queued
    by that id once (``JobQueue.enqueue_once``), so a press cut off after its close and before
    its job (a node that died, an error answered) gets its job at the resend, and one that had
    it gets no second.
    """
    await admit_press(
        services, claims, session_id, "done", request_id, address=address
    )  # a refused done changes nothing
    job_id = press_job_id(session_id, "done", claims.sub, request_id)
    result = await services.voice.done(session_id, performer(claims), job_id=job_id, request_id=request_id)
    job_id = result.job_id or job_id
    payload: dict[str, Any] = {"done_count": result.done_count}
    if result.repeated and await services.jobs.was_queued(job_id):
        # The first send of this press got as far as its job, so it cleared the pointer before:
        # one set since is the person's choice (the bot's /session after the Done), which a
        # resend of the press (a lost ack) took away. No job is queued again either.
        cleared = False
    else:
        # Cleared on a resend too: a first press cut off before this step left the pointer set.
        cleared, seq = await services.voice.clear_active_if(claims.sub, session_id)
        # The job clears the pointer again (seed 002) only while nobody changed it since: one
        # who chose this session again after the Done (the bot's /session) keeps it.
        payload[ACTIVE_SEQ_FIELD] = seq
    job = job_for(DONE_MULTIPROMPT, claims, session_id, payload, job_id=job_id)
    if not request_id:
        await services.jobs.enqueue(job)
        await announce_queued(services, job)
    elif await services.jobs.enqueue_once(job):
        await announce_queued(services, job)
    return {
        "session_id": session_id,
        "done_count": result.done_count,
        "is_active": False,
        "active_session_cleared": cleared,
        "job_id": job.job_id,
        "repeated": result.repeated,
    }


async def process_late_chunks(services: Services, claims: Claims, session_id: str) -> bool:
    """A closed session took a late chunk (storage/voice/chunks.py): its post-processing ran at
    Done without it, so the Done's job is queued again, on behalf of the uploader. One waiting
    run does every late chunk that comes before it starts (``JobQueue.enqueue_coalesced``): a
    phone back online with fifty queued chunks queues one run, not fifty. True when queued now."""
    job = job_for(DONE_MULTIPROMPT, claims, session_id, {"late_chunks": True})
    queued = await services.jobs.enqueue_coalesced(job, f"late_chunks:{session_id}")
    if queued:
        await announce_queued(services, job)
    return queued


async def announce_queued(services: Services, job: Job, *, retried_at_ms: int | None = None) -> None:
    """Tell the session's clients (and keep in its ``last_job``) that ``job`` waits for a worker.

    Nothing was said until a worker took the job up: with every worker busy or none running, the
    page said "No jobs yet" and "Not processed yet" after a Done, and invited a Process now that
    queued the same work twice (audit "jobsreal"). Said after the job is queued, and not at all
    when a worker has said more of it already (``append_kept.lua``'s job id); ``retried_at_ms``:
    a dead letter queued again then, whose failure kept before it is replaced (one after it, a
    worker's that failed it again at once, stays). The announcement is no part of the press: a
    failure of it leaves the job queued and the press answered."""
    data = {"job_id": job.job_id, "job_type": job.type, "step": JOB_QUEUED_STEP, "done": 0, "total": 0}
    try:
        await services.log.append_kept(
            services.scripts.append_kept,
            job.session_id,
            JOB_PROGRESS,
            data,
            **KEEP_LAST_JOB,
            unless_job=job.job_id,
            retried_at_ms=retried_at_ms,
        )
    except UNANNOUNCED as exc:
        log.warning("job %s queued, not announced to session %s: %s", job.job_id, job.session_id, exc)


async def queue_once(
    services: Services,
    claims: Claims,
    session_id: str,
    action: str,
    request_id: str | None,
    job: Job,
    answer: dict[str, Any],
) -> dict[str, Any]:
    """Queue ``job`` and give ``answer`` with ``repeated`` false; for a ``request_id`` already
    answered, its stored answer with ``repeated`` true, its job queued by the stored id only if
    it never was (``JobQueue.enqueue_once``: a first press cut off between the two steps)."""
    if request_id is None:
        await services.jobs.enqueue(job)
        await announce_queued(services, job)
        return {**answer, "repeated": False}
    stored = await services.voice.claim_request(session_id, action, claims.sub, request_id, answer)
    if stored is not None:
        first = replace(job, job_id=str(stored["job_id"]))
        if await services.jobs.enqueue_once(first):
            await announce_queued(services, first)
        return {**stored, "repeated": True}
    if await services.jobs.enqueue_once(job):
        await announce_queued(services, job)
    return {**answer, "repeated": False}
