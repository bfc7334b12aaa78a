"""Voice-session actions shared by the Socket.IO events, the REST routes and the bot."""

from __future__ import annotations

from typing import Any

from auth.access import require_permission
from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.voice.access import performer
from handlers.rate_limit import created_today, within
from storage.jobs import Job
from storage.voice.repository import VoiceSession

DONE_MULTIPROMPT = "DONE_MULTIPROMPT"
POST_PROCESS_SESSION = "POST_PROCESS_SESSION"
CREATE_TASKS_FROM_CHUNKS = "CREATE_TASKS_FROM_CHUNKS"


def job_for(kind: str, claims: Claims, session_id: str, payload: dict[str, Any]) -> Job:
    """A job on behalf of the performer; its telegram id comes from the verified token only."""
    return Job(
        type=kind,
        session_id=session_id,
        performer_id=claims.sub,
        telegram_user_id=claims.telegram_user_id,
        payload=payload,
    )


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


async def create_active(services: Services, claims: Claims, name: str, *, address: str) -> VoiceSession:
    """Create a session owned by the performer and make it their active session.

    Limited per user and per client ``address`` per minute, and per ``address`` per UTC day in
    the cap every kind of session shares: guest tokens are cheap (one address gets
    ``guests_per_min`` of them), so a per-user limit alone multiplies by the guests one makes, and
    a voice session is kept with no TTL, so a minute's limit alone let one address keep ~43,000
    new sessions a day.
    """
    require_permission(claims, Permission.CREATE)
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
        session = await services.voice.create(owner_id=claims.sub, telegram_user_id=claims.telegram_user_id, name=name)
    await services.voice.set_active(claims.sub, session.id)
    return session


# Jobs one user may queue per minute (done, post_process_session, create_tasks_from_chunks): the
# worker pool is shared, so one user's loop of requests must not bury everyone's jobs.
JOBS_PER_MIN = 30


async def admit_job(services: Services, claims: Claims) -> None:
    """Count one job for the user, or ``rate_limited`` past :data:`JOBS_PER_MIN`."""
    await within(
        services.limiter,
        "jobs",
        claims.sub,
        limit=JOBS_PER_MIN,
        window_s=60,
        message=f"at most {JOBS_PER_MIN} jobs a minute; wait",
    )


async def close(services: Services, claims: Claims, session_id: str) -> dict[str, Any]:
    """Done: close the session (repeat allowed), clear the performer's pointer, queue the job."""
    await admit_job(services, claims)  # before closing: a refused done changes nothing
    result = await services.voice.done(session_id, performer(claims))
    cleared = await services.voice.clear_active_if(claims.sub, session_id)
    job = await services.jobs.enqueue(job_for(DONE_MULTIPROMPT, claims, session_id, {"done_count": result.done_count}))
    return {
        "session_id": session_id,
        "done_count": result.done_count,
        "is_active": False,
        "active_session_cleared": cleared,
        "job_id": job.job_id,
    }
