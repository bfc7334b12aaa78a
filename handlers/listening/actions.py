"""Listening actions shared by the Socket.IO events and the HTTP routes."""

from __future__ import annotations

from typing import Any

from auth.access import can_read
from auth.claims import Claims, Permission
from handlers.listening.day_cap import GuestDayCap
from handlers.listening.payloads import ClearBody, ReportBody, UploadBody
from protocol.errors import CodedError, ErrorCode
from storage.clock import Clock
from storage.listening.repository import ListeningHistories
from storage.listening.model import Outcome, Report, Upload

HISTORY_URL = "/history"
# Offline players' clocks drift: an upload may end this far in the future (it is clamped to now).
UPLOAD_CLOCK_SKEW_MS = 5_000
# An upload older than this is a broken clock (1970), not a history.
UPLOAD_MAX_AGE_MS = 366 * 86_400_000


def writer(claims: Claims) -> str:
    """Who the scripts check as the history's owner.

    A token that may not write its own history (``update``, with ``read_own`` or ``read_all``:
    the rule of every route and of ``auth.access.require_update``) writes as nobody, so the
    script itself refuses it with ``forbidden``, after ``session_not_found`` (the platform's
    check order).
    """
    return claims.sub if may_write(claims) else ""


def may_write(claims: Claims) -> bool:
    """Whether ``claims`` may change its own history: ``update`` and a read permission."""
    return claims.has(Permission.UPDATE) and can_read(claims, claims.sub)


def require_history_read(claims: Claims) -> None:
    """Refuse ``forbidden`` a token that may not read its own history (``read_own`` or
    ``read_all``): finding (and making) it is a read, over HTTP as over Socket.IO."""
    if not can_read(claims, claims.sub):
        raise CodedError(ErrorCode.FORBIDDEN, "the read_own permission is required")


def _meta(body: ReportBody | UploadBody) -> dict[str, Any] | None:
    return body.item.model_dump(exclude_none=True) if body.item is not None else None


def outcome_ack(history_id: str, outcome: Outcome, meta: dict[str, Any] | None) -> dict[str, Any]:
    """The ack of a report or an upload, with the item's metadata as stored (a report without
    ``item`` shows what the history shows)."""
    meta = outcome.meta if outcome.meta is not None else meta
    return {
        "session_id": history_id,
        "action": outcome.action,
        "changed": outcome.offset > 0,
        "offset": outcome.offset,
        "listening": outcome.session.public(meta) if outcome.session is not None else None,
    }


async def report(
    histories: ListeningHistories, cap: GuestDayCap, claims: Claims, address: str, history_id: str, body: ReportBody
) -> dict[str, Any]:
    """Apply one status report to the caller's history (a guest's new session counted for
    ``address`` in ``cap``)."""
    meta = _meta(body)
    played = Report(
        item_id=body.item_id,
        status=body.status,
        device_id=body.device_id,
        position_s=body.position_s,
        meta=meta,
        ago_ms=body.ago_ms,
        pause_id=body.pause_id or "",
        continues=body.continues or "",
    )

    async def write(may_add: bool) -> Outcome:
        return await histories.report(history_id, writer(claims), played, may_add=may_add)

    outcome = await cap.adding(claims, address, write)
    return outcome_ack(history_id, outcome, meta)


async def upload(
    histories: ListeningHistories,
    cap: GuestDayCap,
    clock: Clock,
    claims: Claims,
    address: str,
    history_id: str,
    body: UploadBody,
) -> dict[str, Any]:
    """Store an offline player's finished session (idempotent by ``client_id``; a guest's
    counted for ``address`` in ``cap``)."""
    now_ms = clock.now_ms()
    # With the player's clock as it sent (`sent_at`), its times are moved onto this server's: a
    # phone whose clock ran minutes ahead had what it played refused as "in the future" (and one
    # behind filed it too early). The move counts the upload's time in transit as played later.
    shift = 0 if body.sent_at is None else now_ms - body.sent_at
    started_at, sent_end = body.started_at + shift, body.ended_at + shift
    # A device clock a little ahead is clamped, not refused: its session ended "now".
    ended_at = min(sent_end, now_ms)
    # Times refused are said by the store, after it has looked for the client_id: a resend of
    # an upload stored (a lost answer, sent again a year on, or with its clock moved since) is
    # answered as the repeat it is, as the protocol says, not refused.
    refused = ""
    if sent_end > now_ms + UPLOAD_CLOCK_SKEW_MS:
        refused = "ended_at is in the future"
    elif started_at < now_ms - UPLOAD_MAX_AGE_MS:
        refused = "started_at is more than a year ago"
    elif ended_at <= started_at:
        refused = "started_at is in the future"
    meta = _meta(body)
    finished = Upload(
        item_id=body.item_id,
        device_id=body.device_id,
        client_id=body.client_id,
        started_at=started_at,
        ended_at=ended_at,
        meta=meta,
    )

    async def write(may_add: bool) -> Outcome:
        return await histories.upload(history_id, writer(claims), finished, may_add=may_add, refused=refused)

    outcome = await cap.adding(claims, address, write)
    ack = outcome_ack(history_id, outcome, meta)
    ack["duplicate"] = outcome.action == "duplicate"
    return ack


async def delete(histories: ListeningHistories, claims: Claims, history_id: str, listening_id: str) -> dict[str, Any]:
    """Delete one listening session."""
    offset = await histories.remove(history_id, writer(claims), listening_id)
    return {"session_id": history_id, "id": listening_id, "offset": offset}


async def clear(histories: ListeningHistories, claims: Claims, history_id: str, body: ClearBody) -> dict[str, Any]:
    """Delete the whole history (``body.confirm`` is true by validation), once per ``request_id``."""
    cleared = await histories.clear(history_id, writer(claims), body.request_id or "")
    return {
        "session_id": history_id,
        "removed": cleared.removed,
        "offset": cleared.offset,
        "repeated": cleared.repeated,
    }
