"""An operator's deletion of one session, whatever its kind, leaving nothing of it behind.

The session's own keys go in one script (``AdminStore.delete``: its record, the keys its kind
names in ``owned_keys``, an event on its log); what the kind keeps elsewhere (other hash slots,
files on disk, companion sessions) goes next, in the kind's ``on_delete``. ``DELETE
/admin/sessions/{id}`` and the bulk orphan deletion both come here.

That second step cannot share the script (it reaches other slots and the disk), so it is owed
before the script runs: ``AdminStore.note_cleanup`` records the session's record first, and the
entry goes once ``on_delete`` has finished. A follow-up that failed (Redis away for a moment, a
disk error) or never ran (the process was killed between the two steps) is retried by
:class:`CleanupRetry` on every node; ``on_delete`` is safe to repeat. An entry whose session
still exists is a deletion that never happened: it is dropped, nothing is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from handlers.background import STOP_WAIT_S, cancelled, stop_if_cancelled
from handlers.context import Services
from protocol.errors import CodedError, ErrorCode
from storage.admin import AdminStore

log = logging.getLogger(__name__)

# An owed follow-up younger than this is left to the deletion that noted it (still running).
RETRY_GRACE_S = 60.0
# Follow-ups retried per pass, so one pass stays short however many are owed.
RETRY_BATCH = 100


@dataclass(frozen=True, slots=True)
class Deleted:
    """What was deleted: the session's kind and owner, and the offset of its deletion event."""

    kind: str
    owner_id: str
    offset: int


class SessionDeleter:
    """Deletes sessions for an operator (no access check here: the routes check the admin)."""

    def __init__(self, services: Services, store: AdminStore) -> None:
        self._s = services
        self._store = store

    async def delete(self, session_id: str, *, actor: str, known_kinds_only: bool = True) -> Deleted:
        """Delete the session and what it owns; ``session_not_found`` when there is none.

        With ``known_kinds_only``, a kind this server does not serve is ``session_not_found``
        too (as for every route); without, its record and log are deleted all the same.
        """
        record: dict[str, str] = await self._s.redis.hgetall(self._s.keys.session(session_id))  # type: ignore[assignment,misc]
        kind = self._s.kinds.get(record.get("kind", ""))
        if not record.get("kind") or (kind is None and known_kinds_only):
            raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
        extra = kind.owned_keys(session_id) if kind else []
        if kind is not None:
            await self._store.note_cleanup(session_id, record)  # owed from here (module docstring)
        offset = await self._store.delete(session_id, extra_keys=extra, actor=actor)
        if kind is not None:
            try:
                await kind.on_delete(session_id, record)
                await self._store.cleanup_done(session_id)
            except Exception:  # the session is gone: that stands; the rest is retried
                log.exception("session %s: deleted; its follow-up failed and will be retried", session_id)
        return Deleted(kind=record["kind"], owner_id=record.get("owner_id", ""), offset=offset)

    async def retry_owed(self, *, grace_s: float = RETRY_GRACE_S) -> int:
        """Finish the owed follow-ups noted more than ``grace_s`` ago; how many were settled."""
        settled = 0
        owed = await self._store.owed_cleanups(older_than_ms=int(grace_s * 1000), limit=RETRY_BATCH)
        for session_id, record in owed:
            kind = self._s.kinds.get(record.get("kind", ""))
            exists = await self._s.redis.exists(self._s.keys.session(session_id))
            if kind is not None and not exists:
                try:
                    await kind.on_delete(session_id, record)
                except Exception:
                    log.exception("session %s: the follow-up of its deletion failed again", session_id)
                    continue
            # done now, or nothing to do: the session was never deleted, or its kind is not served here
            await self._store.cleanup_done(session_id)
            settled += 1
        return settled

    @staticmethod
    def summary(deleted: Deleted) -> dict[str, Any]:
        """The audit detail of a deletion."""
        return {"kind": deleted.kind, "owner_id": deleted.owner_id}


class CleanupRetry:
    """Retries owed deletion follow-ups every ``interval_s`` while the app runs."""

    def __init__(self, deleter: SessionDeleter, *, interval_s: float) -> None:
        self._deleter = deleter
        self.interval_s = interval_s

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
        while not cancelled():
            await asyncio.sleep(self.interval_s)
            try:
                settled = await self._deleter.retry_owed()
                if settled:
                    log.info("settled %d owed deletion follow-up(s)", settled)
            except (RedisError, OSError) as exc:
                stop_if_cancelled(exc)
                log.warning("deletion follow-ups: %s", exc)
