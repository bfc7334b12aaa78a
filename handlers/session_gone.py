"""Why a session a link names is gone, said to whoever opens the link later.

A session deleted by the guest sweep (its guest forgotten after its idle time) or by an operator
was "not found" to a bookmark opened afterwards, which the pages said as "It may have been
mistyped" (audit "daysdevices": a person back after a month). Its deleter keeps a mark of why
(:meth:`Keys.session_gone`, :data:`GONE_KEPT_S`), in the session's own slot, and a page's read of
the session turns ``session_not_found`` into the same code with that ``reason``:
``deleted_with_guest`` or ``deleted_by_operator``.
"""

from __future__ import annotations

from handlers.context import Services
from protocol.errors import CodedError, ErrorCode
from storage.failures import REDIS_AWAY

# How long the mark is kept: as long as a guest is kept idle, so a bookmark of its things opened
# any time in the month after is told. About 60 bytes a session.
GONE_KEPT_S = 30 * 86_400

_REASONS = {
    "retention": ("deleted_with_guest", "this session was deleted with its guest, forgotten after its idle time"),
    "operator": ("deleted_by_operator", "this session was deleted on the server"),
}


async def mark_gone(services: Services, session_id: str, actor: str) -> None:
    """Keep why ``session_id`` went (its deleter's ``actor``: the guest sweep's ``retention:…``,
    else an operator's); best effort, the deletion being done."""
    why = "retention" if actor.startswith("retention:") else "operator"
    try:
        await services.redis.set(services.keys.session_gone(session_id), why, ex=GONE_KEPT_S)
    except REDIS_AWAY:  # a deletion is not undone for want of its mark: the link says "not found"
        return


async def explained(services: Services, session_id: str, refusal: CodedError) -> CodedError:
    """``refusal`` (a ``session_not_found``), with why the session went when that is known."""
    if refusal.code is not ErrorCode.SESSION_NOT_FOUND:
        return refusal
    why = await services.redis.get(services.keys.session_gone(session_id))
    said = _REASONS.get(str(why)) if why else None
    if said is None:
        return refusal
    reason, message = said
    return CodedError(ErrorCode.SESSION_NOT_FOUND, message, reason=reason)
