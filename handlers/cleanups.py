"""Finishing deletions: what a session's kind keeps outside its own keys goes, or is retried.

Every deletion of a session notes what it will owe before its script runs
(``storage.cleanups.OwedCleanups.note``, with the record as it was), then, once the script
has deleted the session's keys, runs the kind's ``on_delete`` (its place in other hash slots,
its files on disk) and clears the note (:func:`settle`). A note left behind -- ``on_delete``
failed (Redis away for a moment, a disk error) or never ran (the process was killed between
the two steps) -- is finished by :class:`CleanupRetry`, which every node runs. ``on_delete``
is safe to repeat. A note whose session still exists is a deletion that never happened: it
is dropped and nothing is touched. The same loop removes what a killed process's chunk uploads
left in the blob folder's ``.incoming`` (``storage.voice.blobs.BlobStore.sweep_incoming``), at
start and at each pass, and then, with the local store, a bounded batch of the blob folder's files
that no record names: a chunk file whose record was never written (the process killed between the
two), a folder whose session does not exist (``storage.voice.unrecorded_blobs``). Every deletion
of a whole session goes through :func:`delete_owing`: an operator's (``handlers.admin.deletion``), a voice owner's
(``handlers.voice.retention``) and a pattern's (``handlers.patterns.http``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from handlers.background import STOP_WAIT_S, cancelled, stop_if_cancelled
from handlers.context import Services
from handlers.log_throttle import LogThrottle
from protocol.errors import CodedError
from storage.failures import REDIS_AWAY
from storage.voice.blobs import INCOMING_GRACE_S
from storage.voice.unrecorded_blobs import NO_RECORD, NO_SESSION, UnrecordedBlobs

log = logging.getLogger(__name__)
# The label of sessionhub_blob_files_removed_total for an upload's temporary file left behind.
INCOMING = "incoming"
# An unexpected failure of a round is logged once with its traceback, then counted (the loop
# goes on at its interval, which may be short).
_failed = LogThrottle(log)

# A note younger than this is left to the deletion that wrote it (it may still be running).
RETRY_GRACE_S = 60.0
# Notes finished per pass, so that one pass stays short however many are owed.
RETRY_BATCH = 100

T = TypeVar("T")


async def delete_owing(
    services: Services,
    session_id: str,
    delete: Callable[[dict[str, str]], Awaitable[T]],
    *,
    record: dict[str, str] | None = None,
) -> T:
    """Run ``delete`` (a script removing the session's own keys) with its kind's follow-up owed.

    ``record`` is the session's hash as it was (read here when not given): ``on_delete`` needs
    it once the script has removed it, and ``delete`` gets it ({} for no session). A deletion
    refused with a coded error (not allowed, a published pattern, gone) owes nothing; when the
    session has gone meanwhile the note stays, since the deletion that removed it may own it (a
    retry then finds nothing left to do).
    """
    if record is None:
        record = await _record(services, session_id)
    if not record.get("kind"):
        return await delete(record)  # nothing to owe: the deletion answers for the missing session
    await services.cleanups.note(session_id, record)
    try:
        result = await delete(record)
    except CodedError:
        if await services.redis.exists(services.keys.session(session_id)):
            await services.cleanups.done(session_id)
        raise
    await settle(services, session_id, record)  # a failure is retried, the deletion stands
    return result


async def _record(services: Services, session_id: str) -> dict[str, str]:
    found: dict[str, str] = await services.redis.hgetall(services.keys.session(session_id))  # type: ignore[assignment]
    return found


async def settle(services: Services, session_id: str, record: dict[str, str]) -> bool:
    """The deleted session's ``on_delete`` and its index entries dropped, then its note cleared;
    False when that failed (logged; the note stays for :class:`CleanupRetry`)."""
    kind = services.kinds.get(record.get("kind", ""))
    try:
        if kind is not None:
            await kind.on_delete(session_id, record)
        # The deletion drops the session from the global and admin indexes right after its
        # script: a process killed in between left it listed (counted, sized) for good.
        # Safe to repeat: what is no longer listed is left as it is.
        owner_id = record.get("owner_id") or record.get("author_id") or ""
        await services.sessions.unindex(session_id=session_id, owner_id=owner_id)
        await services.cleanups.done(session_id)
    except Exception:  # the session is gone, and stays gone: the rest is retried
        log.exception("session %s: deleted; what it kept elsewhere will be removed later", session_id)
        return False
    return True


async def retry_owed(services: Services, *, grace_s: float = RETRY_GRACE_S) -> int:
    """Finish the follow-ups noted more than ``grace_s`` ago; how many were settled."""
    settled = 0
    owed = await services.cleanups.owed(older_than_ms=int(grace_s * 1000), limit=RETRY_BATCH)
    for session_id, record in owed:
        if await services.redis.exists(services.keys.session(session_id)):
            await services.cleanups.done(session_id)  # never deleted: nothing is owed
            settled += 1
        elif await settle(services, session_id, record):
            settled += 1
    return settled


class CleanupRetry:
    """Runs :func:`retry_owed` every ``interval_s`` while the app runs."""

    def __init__(self, services: Services, *, interval_s: float) -> None:
        self._s = services
        self.interval_s = interval_s
        config = services.voice.config
        # What an upload may still be doing with a file: streaming it, then storing and recording it.
        self._stale_s = config.upload_deadline_s + INCOMING_GRACE_S
        self._unrecorded = (
            UnrecordedBlobs(root=config.blob_dir, redis=services.redis, keys=services.keys, grace_s=self._stale_s)
            if config.s3 is None  # a bucket's objects are not on this disk
            else None
        )

    def register(self, app: web.Application) -> None:
        """Run the retries for the app's lifetime."""
        app.cleanup_ctx.append(self._lifetime)

    async def _lifetime(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._retry_forever())
        yield
        task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    async def _retry_forever(self) -> None:
        await self._sweep_incoming()  # what a process killed before this start left
        await self._sweep_unrecorded()
        while not cancelled():
            await asyncio.sleep(self.interval_s)
            await self._sweep_incoming()
            await self._sweep_unrecorded()
            try:
                settled = await retry_owed(self._s)
                if settled:
                    log.info("settled %d owed deletion follow-up(s)", settled)
            except REDIS_AWAY as exc:
                stop_if_cancelled(exc)
                log.warning("deletion follow-ups: %s", exc)
            except Exception as exc:  # a bug or a client library's own error must not end the loop
                _failed.exception("deletion follow-ups failed", exc)

    async def _sweep_incoming(self) -> None:
        """Remove the temporary files of uploads no process is writing any more (their
        process was killed): older than the body's deadline and the grace after it."""
        try:
            removed = await asyncio.to_thread(self._s.voice.blobs.sweep_incoming, self._stale_s)
        except OSError as exc:  # the folder unreadable for a moment: the next pass tries again
            log.warning("temporary upload files: %s", exc)
            return
        except Exception as exc:  # a bug must not end the loop that finishes deletions too
            _failed.exception("sweeping temporary upload files failed", exc)
            return
        if removed:
            log.info("removed %d temporary file(s) of uploads cut off by a killed process", removed)
        self._s.metrics.blob_files_removed.labels(INCOMING).inc(removed)

    async def _sweep_unrecorded(self) -> None:
        """Remove a batch of the blob folder's files no record names (older than the uploads' grace)."""
        if self._unrecorded is None:
            return
        try:
            swept = await self._unrecorded.sweep()
        except REDIS_AWAY as exc:  # Redis away, or the folder unreadable, for a moment: the next pass tries again
            stop_if_cancelled(exc)
            log.warning("unrecorded audio files: %s", exc)
            return
        except Exception as exc:  # a bug must not end the loop that finishes deletions too
            _failed.exception("sweeping unrecorded audio files failed", exc)
            return
        removed = self._s.metrics.blob_files_removed
        removed.labels(NO_RECORD).inc(swept.no_record)
        removed.labels(NO_SESSION).inc(swept.no_session)
        if swept.no_record:
            log.info(
                "removed %d week-old audio file(s) no chunk names (their upload's process was killed, or Redis "
                "was restored from an older backup)",
                swept.no_record,
            )
        if swept.no_session or swept.folders:
            log.info(
                "removed %d audio file(s) and %d folder(s) of sessions that do not exist",
                swept.no_session,
                swept.folders,
            )
