"""Built-in job processors. Each is plain about what it does; none pretends to do more.

A processor is ``async (ctx, job) -> dict`` returning the result published to the session's
subscribers in a ``job_result`` event. Raising makes the job retry with back-off. More
processors can be plugged in with ``SESSIONHUB_PROCESSORS=module:function`` (a function
returning a ``{job_type: processor}`` mapping).
"""

from __future__ import annotations

import asyncio
import importlib
import json
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

from handlers.context import Services
from handlers.voice.actions import ACTIVE_SEQ_FIELD, CREATE_TASKS_FROM_CHUNKS, DONE_MULTIPROMPT, POST_PROCESS_SESSION
from handlers.voice.chunks import chunk_repository

# Re-exported (``as``): the worker and plugged-in processors import them from here.
from jobs.failures import PermanentJobError as PermanentJobError, SessionGone as SessionGone
from handlers.voice.fetch_order import TELEGRAM_FETCH
from jobs.telegram_fetch import telegram_fetch
from jobs.transcription import NOT_CONFIGURED, Transcript, transcribe
from jobs.voice_digest import MAX_TASKS, digest, iter_task_records, task_records, texts_of
from protocol.events import JOB_PROGRESS
from storage.jobs import Job
from storage.voice.repository import KEEP_LAST_JOB, VoiceSession


# A processor gets the same dependency bundle as every handler.
Processor = Callable[[Services, Job], Awaitable[dict[str, Any]]]

# The in-process worker shares the event loop with every client of its node: a job works in
# bounded slices (a page of materials, a few texts' task lines) and hands the loop back between them.
MATERIALS_PAGE = 250
TEXTS_PER_SLICE = 8


async def _session_or_fail(ctx: Services, job: Job) -> VoiceSession:
    session = await ctx.voice.get(job.session_id)
    if session is None:
        raise SessionGone("the session no longer exists")
    return session


# What the worker running this job hears of each progress step (server.worker: its time limit
# then counts from the step, so a long job that is getting on is not cut as a hung one). Set in the
# context the worker runs the processor in; a plugged-in processor reports its steps with
# :func:`report_progress`.
PROGRESSED: ContextVar[Callable[[], None] | None] = ContextVar("sessionhub_job_progressed", default=None)


# How long the running job has until the worker's time limit cuts it (seconds; None outside a
# worker). A step bounded by a time of its own (a chunk's transcription) ends within it: cut by
# the job's limit instead, it failed the whole job, every attempt alike (audit "jobsreal", with
# SESSIONHUB_JOB_TIMEOUT_S under SESSIONHUB_VOICE_TRANSCRIBE_TIMEOUT_S), where its own limit
# fails only that chunk and the job goes on.
TIME_LEFT: ContextVar[Callable[[], float] | None] = ContextVar("sessionhub_job_time_left", default=None)
# The time a step leaves of the job's, to record its outcome and say its progress: half of what is
# left, at most this (a loaded host took over 0.2 s of a 1 s limit to kill a command and say so).
STEP_RESERVE_MAX_S = 5.0


def step_time_s(own_s: float) -> float:
    """A step's time limit: its own ``own_s``, or less when the job's time limit comes sooner."""
    left = TIME_LEFT.get()
    if left is None:
        return own_s
    time_left = left()
    return max(min(own_s, time_left - min(time_left / 2, STEP_RESERVE_MAX_S)), 0.001)


def report_progress() -> None:
    """Tell the worker running the current job that it got on (its time limit starts again)."""
    heard = PROGRESSED.get()
    if heard is not None:
        heard()


async def _progress(ctx: Services, job: Job, step: str, done: int, total: int) -> None:
    report_progress()
    data = {"job_id": job.job_id, "job_type": job.type, "step": step, "done": done, "total": total}
    await ctx.log.append_kept(ctx.scripts.append_kept, job.session_id, JOB_PROGRESS, data, **KEEP_LAST_JOB)


async def _transcribe_chunks(ctx: Services, job: Job, chunks: list[dict[str, Any]]) -> str:
    """Run the transcription hook on every audio chunk without a transcript; say what happened."""
    config = ctx.voice.config
    if not config.transcribe_command:
        return NOT_CONFIGURED
    repository = chunk_repository(ctx)
    blobs = ctx.voice.blobs  # local or S3: a Done on any node transcribes every chunk
    todo = [c for c in chunks if not c.get("transcript")]
    # Counted over all the session's chunks: a retry, or a run after a late chunk, has fewer left
    # to transcribe, and said "1/7", then "1/6", as if the work had shrunk instead of got on.
    already = len(chunks) - len(todo)
    failed = 0
    for done, chunk in enumerate(todo, start=already + 1):
        async with blobs.as_file(job.session_id, str(chunk["sha256"])) as path:
            if path is None:
                outcome = Transcript(error="the chunk's audio is missing from the blob store")
            else:
                limit_s = step_time_s(config.transcribe_timeout_s)
                outcome = await transcribe(config.transcribe_command, path, str(chunk["mime"]), timeout_s=limit_s)
        fields = {"transcript": outcome.text, "transcript_error": outcome.error}
        await repository.annotate(job.session_id, str(chunk["chunk_id"]), fields)
        chunk.update(fields)
        failed += bool(outcome.error)
        await _progress(ctx, job, "transcribe", done, len(chunks))
    return f"{len(chunks) - failed} of {len(chunks)} chunks transcribed" + (f", {failed} failed" if failed else "")


async def _materials(ctx: Services, session_id: str) -> list[dict[str, Any]]:
    """The session's materials (at most ``max_materials``), read a page at a time."""
    materials: list[dict[str, Any]] = []
    pages = ctx.voice.material_pages(session_id, limit=ctx.limits.max_materials, page_size=MATERIALS_PAGE)
    async for page in pages:
        materials.extend(page)
        await asyncio.sleep(0)
    return materials


@dataclass(frozen=True, slots=True)
class _Digest:
    """A digest built by a job, and when the job read the session for it (ms)."""

    result: dict[str, Any]
    materials: list[dict[str, Any]]
    chunks: list[dict[str, Any]]
    read_at: int


async def _build_digest(ctx: Services, job: Job) -> _Digest:
    """Transcribe (when configured), then digest; the digest, the materials and the chunks."""
    read_at = ctx.clock.now_ms()  # before the reads: a chunk added after it is another job's to see
    materials = await _materials(ctx, job.session_id)
    chunks = await chunk_repository(ctx).list(job.session_id, limit=ctx.voice.config.max_chunks)
    transcription = await _transcribe_chunks(ctx, job, chunks)
    result = digest(materials, chunks, transcription=transcription)
    await _progress(ctx, job, "digest", 1, 1)
    return _Digest(result, materials, chunks, read_at)


async def _collect_tasks(
    known: list[dict[str, Any]], texts: Iterable[tuple[str, tuple[str, str]]]
) -> list[dict[str, Any]]:
    """``known`` tasks, then new ones from ``texts`` (same id: same task), the first MAX_TASKS.

    Stops reading lines once MAX_TASKS are kept: a session whose every line is a task costs no
    more than one with MAX_TASKS of them."""
    merged = {t["task_id"]: t for t in known}
    for count, (source_id, (source, text)) in enumerate(texts, start=1):
        if len(merged) >= MAX_TASKS:
            break
        for task in iter_task_records(source_id, source, text):
            merged.setdefault(task["task_id"], task)
            if len(merged) >= MAX_TASKS:
                break
        if count % TEXTS_PER_SLICE == 0:
            await asyncio.sleep(0)
    return list(merged.values())[:MAX_TASKS]


async def _store_tasks(ctx: Services, job: Job, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Store the session's task list and publish it whole."""
    await ctx.voice.record_outcome(job.session_id, {"tasks": _json(tasks)}, {"tasks": tasks})
    await _progress(ctx, job, "tasks", 1, 1)
    return tasks


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def done_multiprompt(ctx: Services, job: Job) -> dict[str, Any]:
    """After a Done: clear the performer's active pointer, then digest and collect every task.

    Run again for late chunks (``late_chunks`` in the payload: a closed session took audio
    recorded before its close) it digests again and leaves the pointer: nobody pressed Done."""
    session = await _session_or_fail(ctx, job)
    late = bool(job.payload.get("late_chunks"))
    cleared = False
    if not late:
        since = job.payload.get(ACTIVE_SEQ_FIELD)  # absent from a job queued by an older server
        unchanged_since = since if isinstance(since, int) and not isinstance(since, bool) else None
        cleared, _ = await ctx.voice.clear_active_if(job.performer_id, job.session_id, unchanged_since=unchanged_since)
    built = await _build_digest(ctx, job)
    result = built.result
    now = ctx.clock.now_ms()
    stored = await ctx.voice.record_digest(
        job.session_id,
        built.read_at,
        {"digest": _json(result), "processed_at": str(now)},
        {"digest": result, "processed_at": now},
    )
    # The tasks found here join the ones stored now, read again just before: another run may have
    # stored its own since this one read the session (a late chunk's, whose task the older tasks
    # written over it lost), or stored a digest without tasks (post_process_session, whose
    # superseding digest left this Done with no tasks at all: audit "verify43").
    fresh = await ctx.voice.get(job.session_id)
    known = (fresh.tasks if fresh is not None else session.tasks) or []
    tasks = await _store_tasks(ctx, job, await _collect_tasks(known, texts_of(built.materials, built.chunks).items()))
    return {
        "done_count": session.done_count,
        "active_session_cleared": cleared,
        "chunk_count": result["chunk_count"],
        "audio_ms": result["audio_ms"],
        "task_count": len(tasks),
        "transcription": result["transcription"],
        **({} if stored else {"superseded": True}),
    }


async def post_process_session(ctx: Services, job: Job) -> dict[str, Any]:
    """Transcribe (when configured) and digest the session; the digest lands on the record."""
    session = await _session_or_fail(ctx, job)
    built = await _build_digest(ctx, job)
    result = built.result
    position = await ctx.log.position(job.session_id)
    end = session.closed_at or ctx.clock.now_ms()
    summary = {"events": position.offset, "done_count": session.done_count, "open_ms": max(0, end - session.created_at)}
    now = ctx.clock.now_ms()
    stored = await ctx.voice.record_digest(
        job.session_id,
        built.read_at,
        {"digest": _json(result), "processed_at": str(now)},
        {"digest": result, "processed_at": now, "summary": summary},
    )
    return {
        "summary": summary,
        "chunk_count": result["chunk_count"],
        "audio_ms": result["audio_ms"],
        "transcription": result["transcription"],
        **({} if stored else {"superseded": True}),
    }


async def create_tasks_from_chunks(ctx: Services, job: Job) -> dict[str, Any]:
    """Tasks from the named text materials and transcribed chunks, by the rules of voice_digest."""
    session = await _session_or_fail(ctx, job)
    materials = await _materials(ctx, job.session_id)
    chunks = await chunk_repository(ctx).list(job.session_id, limit=ctx.voice.config.max_chunks)
    texts = texts_of(materials, chunks)
    chunk_ids = [str(c) for c in job.payload.get("chunk_ids", [])]
    found = [t for cid in chunk_ids if cid in texts for t in task_records(cid, texts[cid][0], texts[cid][1])]
    named = [(cid, texts[cid]) for cid in chunk_ids if cid in texts]
    await _store_tasks(ctx, job, await _collect_tasks(session.tasks or [], named))
    return {"tasks": found, "missing": [cid for cid in chunk_ids if cid not in texts], "scanned": len(chunk_ids)}


# Jobs that wait on the network, not on the CPU (a Telegram file's download), run beside the rest
# of their batch instead of one after another: six stalled downloads held the single worker, and
# another person's Done, 90 s (audit "verify50").
SIDE_BY_SIDE: frozenset[str] = frozenset({TELEGRAM_FETCH})

BUILT_IN: dict[str, Processor] = {
    DONE_MULTIPROMPT: done_multiprompt,
    POST_PROCESS_SESSION: post_process_session,
    CREATE_TASKS_FROM_CHUNKS: create_tasks_from_chunks,
    TELEGRAM_FETCH: telegram_fetch,
}


def load_processors(spec: str | None) -> dict[str, Processor]:
    """The built-ins, extended or overridden by ``module:function`` entries (comma separated)."""
    processors = dict(BUILT_IN)
    for entry in filter(None, (part.strip() for part in (spec or "").split(","))):
        module_name, _, attr = entry.partition(":")
        factory = getattr(importlib.import_module(module_name), attr)
        processors.update(factory())
    return processors
