"""``TELEGRAM_FETCH``: a voice note or audio sent to the bot becomes an audio chunk of its session.

The webhook stores the material (its ``file_id``) and queues this job once per material (its id
is derived from the material's: :func:`queue_fetch`). The job asks the Bot API for the file
(``handlers.voice.telegram_files``), streams it into the blob store (capped as it arrives),
reads its type and duration from the container, and stores it as the FAB's chunks are stored
(``VoiceChunks.add``: de-duplicated by sha256 and start, counted in the session's totals and the
owner's daily quota, published as ``new_message``). The chunk's start is the material's
``added_at`` less its duration, so every run of one material stores the same chunk: a retried
job, a job run twice (a worker that died holding it) or two nodes at once store it once.

A session closed while the fetch was pending takes the chunk late (storage/voice/chunks.py: it
was sent before the close) and its Done's processing is queued again, as for a late FAB chunk.

What Telegram says decides what follows (:class:`~handlers.voice.telegram_files.FetchLater` or
``FetchFailed``): a network failure, a 5xx or a 429 queues the job again, after Telegram's
``retry_after`` or a back-off, at most :data:`FETCH_ATTEMPTS` times; a failure for good (a 400,
403 or 404, a file too big) is kept on the material (``audio: "failed"``, ``audio_error``) and the
job fails (``job_result`` ``failed``) without another try: dead-lettered when only the operator can
change it (the token refused, a wrong API address; run again once fixed), declined when it is the
file's or the person's (too big, gone, not audio, their quota), which no operator can do anything
about and which raised their ``dead_letters`` alert (audit "tgfetch").
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any, NoReturn

import aiohttp

from auth.claims import CLAIMS_ADAPTER, Claims, Permission
from handlers.context import Services
from handlers.voice.actions import process_late_chunks
from handlers.voice.chunks import chunk_repository
from handlers.voice.fetch_order import FetchOrder
from handlers.voice.telegram_files import TELEGRAM_FILE_MAX_BYTES, BotFiles, FetchFailed, FetchLater, TelegramFile
from jobs.failures import Declined, PermanentJobError, RetryLater, SessionGone
from protocol.errors import CodedError, ErrorCode
from storage.jobs import Job
from storage.voice.audio_format import ImpossibleDuration, probe
from storage.voice.blobs import BlobWriter
from storage.voice.chunks import ChunkAdded, NewChunk
from storage.voice.quota import Reservation, UploadQuota
from storage.voice.repository import Performer

log = logging.getLogger(__name__)

# Tries of one file before it is given up (the network, Telegram's 5xx and 429s all count).
FETCH_ATTEMPTS = 8
# The longest back-off between two tries (a retry_after is waited as Telegram says, up to an hour).
FETCH_BACKOFF_MAX_MS = 10 * 60 * 1000
# What a file whose size Telegram did not say holds of the day's quota while it downloads.
UNKNOWN_SIZE_HELD = 1024 * 1024
# The claims a late chunk's re-processing is queued with (the bot acts with these for its users).
_BOT_PERMISSIONS = (Permission.READ_OWN, Permission.CREATE, Permission.UPDATE)
_CLAIMS_TTL_S = 300


async def telegram_fetch(ctx: Services, job: Job) -> dict[str, Any]:
    """Fetch one material's file from Telegram and store it as an audio chunk of the job's session."""
    config = ctx.voice.config
    if not config.telegram_bot_token:
        raise PermanentJobError(
            "no bot token is set (SESSIONHUB_VOICE_TELEGRAM_BOT_TOKEN): the file stays with Telegram"
        )
    if await ctx.voice.get(job.session_id) is None:
        raise SessionGone("the session no longer exists")
    try:
        order = FetchOrder.of(job.payload)
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    files = BotFiles(api_url=config.telegram_api_url, token=config.telegram_bot_token)
    try:
        added = await _fetch_and_store(ctx, job, order, files)
    except FetchLater as exc:
        await _later(ctx, job, order, exc)
    except FetchFailed as exc:
        await _note(ctx, job, order, {"audio": "failed", "audio_error": str(exc)})
        said = f"the voice message could not be fetched from Telegram: {exc}"
        raise (PermanentJobError(said) if exc.operators else Declined(said)) from None
    await _note(ctx, job, order, {"audio": "stored", "chunk_id": added.chunk_id})
    if added.late:  # a duplicate too: its first run may have died before this step
        await process_late_chunks(ctx, _claims(ctx, job), job.session_id)
    return {
        "material_id": order.material_id,
        "chunk_id": added.chunk_id,
        "duplicate": added.duplicate,
        "late": added.late,
        "chunk_count": added.chunk_count,
        "audio_ms": added.audio_ms,
    }


async def _later(ctx: Services, job: Job, order: FetchOrder, exc: FetchLater) -> NoReturn:
    """Queue the fetch again after Telegram's wait or a back-off; past the tries, fail it for good."""
    attempt = order.attempt + 1
    if attempt >= FETCH_ATTEMPTS:
        error = f"Telegram did not hand the file over in {attempt} tries: {exc}"
        await _note(ctx, job, order, {"audio": "failed", "audio_error": error})
        raise PermanentJobError(error)
    backoff_ms = min(ctx.voice.config.telegram_fetch_backoff_ms * 2 ** (attempt - 1), FETCH_BACKOFF_MAX_MS)
    wait_ms = backoff_ms if exc.retry_after_s is None else max(int(exc.retry_after_s * 1000), backoff_ms)
    # Parked by the worker with the tries made so far in its payload (the worker's own back-off
    # knows nothing of a retry_after), and said to be waiting, not done.
    raise RetryLater(
        f"Telegram did not hand the file over yet ({exc}): tried again in {wait_ms // 1000 or 1} s",
        delay_ms=wait_ms,
        payload=replace(order, attempt=attempt).payload(),
    )


async def _fetch_and_store(ctx: Services, job: Job, order: FetchOrder, files: BotFiles) -> ChunkAdded:
    async with aiohttp.ClientSession(trust_env=False) as http:
        located = await files.locate(http, order.file_id)
        quota = UploadQuota(ctx.redis, ctx.keys, ctx.voice.config.upload_quota_bytes)
        # A file whose size Telegram said is reserved whole or not at all: one that does not fit
        # held all the room left through its download, and the person's next note was refused
        # for good, "quota used up" (audit "tgfetch"). One of unknown size holds UNKNOWN_SIZE_HELD
        # while it downloads and the rest once it is down (refused then if the day cannot hold
        # it): holding 20 MiB, a process killed mid-download left them counted for the day
        # (audit "verify50"), where a kill now leaves at most that much.
        size = located.file_size
        wanted = size or min(UNKNOWN_SIZE_HELD, files.max_bytes)
        reservation = await quota.reserve([f"u:{job.performer_id}"], wanted=wanted, least=size if size else 1)
        if reservation is None:
            raise FetchFailed(f"the daily upload quota ({quota.limit_bytes} bytes) is used up")
        try:
            added = await _download_and_store(ctx, job, order, files, http, located, reservation)
        except BaseException:
            await reservation.cancel()
            raise
    await reservation.settle(added.stored_bytes)
    return added


async def _download_and_store(
    ctx: Services,
    job: Job,
    order: FetchOrder,
    files: BotFiles,
    http: aiohttp.ClientSession,
    located: TelegramFile,
    reservation: Reservation,
) -> ChunkAdded:
    writer = ctx.voice.blobs.writer(min(files.max_bytes, TELEGRAM_FILE_MAX_BYTES))
    try:
        await files.download(http, located, writer)
        writer.close()
        if writer.size > reservation.bytes and not await reservation.grow(writer.size):
            raise FetchFailed("the daily upload quota is used up")
        chunk = await _described(ctx, job, order, writer)
    except BaseException:
        writer.discard()
        raise
    return await _store(ctx, job, writer, chunk)


async def _described(ctx: Services, job: Job, order: FetchOrder, writer: BlobWriter) -> NewChunk:
    """The chunk the file makes: type and duration from the container (else Telegram's duration)."""
    try:
        info = await asyncio.to_thread(probe, writer.temp_path)
    except ImpossibleDuration as exc:
        raise FetchFailed(f"the file states an impossible duration: {exc}") from None
    if info is None:
        raise FetchFailed("the file is not an audio format this server stores")
    told_ms = int(order.duration_s * 1000)
    duration_ms = info.duration_ms if info.duration_ms is not None else told_ms
    start_ms = max(order.added_at - duration_ms, 0)
    return NewChunk(
        sha256=writer.sha256,
        mime=info.mime,
        size_bytes=writer.size,
        start_ms=start_ms,
        end_ms=start_ms + duration_ms,
        duration_ms=duration_ms,
        client_duration_ms=told_ms,
        duration_source=info.parser if info.duration_ms is not None and info.parser else "telegram",
        speaker="",
        uploaded_by=job.performer_id,
        uploaded_at=ctx.clock.now_ms(),
    )


async def _store(ctx: Services, job: Job, writer: BlobWriter, chunk: NewChunk) -> ChunkAdded:
    """The file into place, then the chunk (the FAB's order: nobody hears of audio not there yet)."""
    blobs, config = ctx.voice.blobs, ctx.voice.config
    try:
        await blobs.commit(writer, job.session_id, content_type=chunk.mime)
    except BaseException:
        writer.discard()
        raise
    try:
        added = await chunk_repository(ctx).add(
            job.session_id,
            chunk,
            Performer(user_id=job.performer_id, read_scope="own", may_update=True),
            max_chunks=config.max_chunks,
            late_window_ms=config.late_chunks_s * 1000,
        )
    except CodedError as exc:
        await _drop_unreferenced(ctx, job.session_id, chunk.sha256)
        raise _refusal(exc) from None
    except BaseException:
        await _drop_unreferenced(ctx, job.session_id, chunk.sha256)
        raise
    ctx.sessions.used(job.session_id)
    return added


async def _drop_unreferenced(ctx: Services, session_id: str, sha256: str) -> None:
    """Remove a committed file no chunk points at (another run's chunk of the same audio keeps it)."""
    if not await chunk_repository(ctx).is_referenced(session_id, sha256):
        await ctx.voice.blobs.remove(session_id, sha256)
        await ctx.voice.blobs.prune(session_id)  # lost a race with the session's deletion


def _refusal(exc: CodedError) -> Exception:
    """What a refused chunk means for the fetch: the session gone, or a failure for good."""
    if exc.code is ErrorCode.SESSION_NOT_FOUND:
        return SessionGone("the session no longer exists")
    if exc.code is ErrorCode.INVALID_STATE:
        return FetchFailed("the session was closed too long before the file could be fetched")
    if exc.code is ErrorCode.UNAVAILABLE:
        return exc  # a store away: the worker tries the job again
    return FetchFailed(exc.message)


async def _note(ctx: Services, job: Job, order: FetchOrder, fields: dict[str, Any]) -> None:
    """Keep what became of the fetch on the material (nothing to keep it on once it is gone)."""
    try:
        await ctx.voice.note_material(job.session_id, order.material_id, fields, hint=order.index)
    except CodedError as exc:
        if exc.code not in (ErrorCode.SESSION_NOT_FOUND, ErrorCode.NOT_FOUND):
            raise


def _claims(ctx: Services, job: Job) -> Claims:
    """The bot's claims for the job's user (a late chunk's re-processing is queued on their behalf)."""
    return CLAIMS_ADAPTER.validate_python(
        {
            "sub": job.performer_id,
            "exp": int(ctx.clock.now_s()) + _CLAIMS_TTL_S,
            "telegram_user_id": job.telegram_user_id,
            "perms": _BOT_PERMISSIONS,
        }
    )
