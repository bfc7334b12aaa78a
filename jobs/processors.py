"""Built-in job processors. Each is plain about what it does; none pretends to do more.

A processor is ``async (ctx, job) -> dict`` returning the result published to the session's
subscribers in a ``job_result`` event. Raising makes the job retry with back-off. More
processors can be plugged in with ``SESSIONHUB_PROCESSORS=module:function`` (a function
returning a ``{job_type: processor}`` mapping).
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from handlers.context import Services
from handlers.voice.actions import CREATE_TASKS_FROM_CHUNKS, DONE_MULTIPROMPT, POST_PROCESS_SESSION
from storage.jobs import Job


class PermanentJobError(Exception):
    """A failure that retrying cannot fix: the job goes straight to the dead letters."""


# A processor gets the same dependency bundle as every handler.
Processor = Callable[[Services, Job], Awaitable[dict[str, Any]]]


async def _session_or_fail(ctx: Services, job: Job) -> Any:
    session = await ctx.voice.get(job.session_id)
    if session is None:
        raise PermanentJobError("the session no longer exists")
    return session


async def done_multiprompt(ctx: Services, job: Job) -> dict[str, Any]:
    """After a Done: clear the performer's active session if it still points here (seed 002)."""
    session = await _session_or_fail(ctx, job)
    cleared = await ctx.voice.clear_active_if(job.performer_id, job.session_id)
    return {"done_count": session.done_count, "active_session_cleared": cleared}


async def post_process_session(ctx: Services, job: Job) -> dict[str, Any]:
    """Summarise the session from its own record and log: no transcription is done here."""
    session = await _session_or_fail(ctx, job)
    position = await ctx.log.position(job.session_id)
    end = session.closed_at or ctx.clock.now_ms()
    summary = {"events": position.offset, "done_count": session.done_count, "open_ms": max(0, end - session.created_at)}
    now = ctx.clock.now_ms()
    await ctx.voice.record_outcome(
        job.session_id, {"processed_at": str(now)}, {"processed_at": now, "summary": summary}
    )
    return {"summary": summary}


async def create_tasks_from_chunks(ctx: Services, job: Job) -> dict[str, Any]:
    """One open task per chunk id, in the given order; the chunks' content is not analysed."""
    await _session_or_fail(ctx, job)
    chunk_ids = [str(c) for c in job.payload.get("chunk_ids", [])]
    tasks = [{"task_id": str(uuid.uuid4()), "chunk_id": chunk_id, "status": "open"} for chunk_id in chunk_ids]
    return {"tasks": tasks}


BUILT_IN: dict[str, Processor] = {
    DONE_MULTIPROMPT: done_multiprompt,
    POST_PROCESS_SESSION: post_process_session,
    CREATE_TASKS_FROM_CHUNKS: create_tasks_from_chunks,
}


def load_processors(spec: str | None) -> dict[str, Processor]:
    """The built-ins, extended or overridden by ``module:function`` entries (comma separated)."""
    processors = dict(BUILT_IN)
    for entry in filter(None, (part.strip() for part in (spec or "").split(","))):
        module_name, _, attr = entry.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        processors.update(factory())
    return processors
