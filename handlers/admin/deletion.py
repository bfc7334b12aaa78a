"""An operator's deletion of one session, whatever its kind, leaving nothing of it behind.

The session's own keys go in one script (``AdminStore.delete``: its record, the keys its kind
names in ``owned_keys``, an event on its log); what the kind keeps elsewhere (other hash slots,
files on disk, companion sessions) goes next, in the kind's ``on_delete``. ``DELETE
/admin/sessions/{id}`` and the bulk orphan deletion both come here.

What the kind keeps elsewhere is owed before the script runs and settled after it
(``handlers.cleanups``): a follow-up that fails or is cut off by a killed process is retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from handlers.cleanups import delete_owing
from handlers.context import Services
from handlers.session_gone import mark_gone
from protocol.errors import CodedError, ErrorCode
from storage.admin.repository import AdminStore
from storage.sessions import PARTS


@dataclass(frozen=True, slots=True)
class Deleted:
    """What was deleted: the session's kind and owner, and the offset of its deletion event."""

    kind: str
    owner_id: str
    offset: int
    # The session that is a part of this one and went with it (a stream's audience), or "".
    companion: str = ""


class SessionDeleter:
    """Deletes sessions for an operator (no access check here: the routes check the admin)."""

    def __init__(self, services: Services, store: AdminStore) -> None:
        self._s = services
        self._store = store

    async def delete(
        self, session_id: str, *, actor: str, known_kinds_only: bool = True, orphan_bound_ms: int | None = None
    ) -> Deleted:
        """Delete the session and what it owns; ``session_not_found`` when there is none.

        With ``known_kinds_only``, a kind this server does not serve is ``session_not_found``
        too (as for every route); without, its record and log are deleted all the same. With
        ``orphan_bound_ms``, a session accessed after it is kept (``conflict``).
        """
        record: dict[str, str] = await self._s.redis.hgetall(self._s.keys.session(session_id))  # type: ignore[assignment]
        kind = self._s.kinds.get(record.get("kind", ""))
        if not record.get("kind") or (kind is None and known_kinds_only):
            raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
        if kind is None:  # a kind this server does not serve: its record and log only
            offset = await self._store.delete(session_id, extra_keys=[], actor=actor, orphan_bound_ms=orphan_bound_ms)
            await mark_gone(self._s, session_id, actor)
        else:
            extra = kind.owned_keys(session_id)

            async def deleting(_: dict[str, str]) -> int:
                deleted = await self._store.delete(
                    session_id, extra_keys=extra, actor=actor, orphan_bound_ms=orphan_bound_ms
                )
                await mark_gone(self._s, session_id, actor)  # before the follow-ups, which may be cut off
                return deleted

            offset = await delete_owing(self._s, session_id, deleting, record=record)
        part = record.get(PARTS.get(record["kind"], ""), "")
        return Deleted(kind=record["kind"], owner_id=record.get("owner_id", ""), offset=offset, companion=part)

    @staticmethod
    def summary(deleted: Deleted) -> dict[str, Any]:
        """The audit detail of a deletion."""
        return {"kind": deleted.kind, "owner_id": deleted.owner_id}
