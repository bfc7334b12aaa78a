"""Stream-session actions shared by the Socket.IO events and the HTTP routes."""

from __future__ import annotations

from typing import Any

from auth.claims import Claims, Permission
from handlers.streams.answers import OwnClip, ViewerClip
from handlers.streams.day_cap import ClipsDayCap
from handlers.streams.settings import ClipSettings
from handlers.context import Services
from protocol.errors import CodedError, ErrorCode
from storage.streams.repository import StreamSession, StreamSessions, Submission, ViewerCaps


def viewer_url(services: Services, session_id: str) -> str:
    """The link viewers open to clip (absolute when a public URL is set)."""
    return f"{services.public_url.rstrip('/')}/watch/{session_id}"


def streamer_url(services: Services, session_id: str) -> str:
    """The streamer's dashboard of the session."""
    return f"{services.public_url.rstrip('/')}/streams/{session_id}"


def full(services: Services, session: StreamSession, claims: Claims) -> dict[str, Any]:
    """The record with its links, and whether the caller acts as its owner (the owner, or an
    ``admin`` token, which may do all the owner may: the dashboard opens for both)."""
    return {
        **session.public(),
        "viewer_url": viewer_url(services, session.id),
        "streamer_url": streamer_url(services, session.id),
        "is_owner": acts_as_owner(claims, session),
    }


def acts_as_owner(claims: Claims, session: StreamSession) -> bool:
    """The stream's owner, or an ``admin`` token acting as its owner."""
    return claims.sub == session.owner_id or Permission.ADMIN in claims.perms


async def existing(streams: StreamSessions, session_id: str) -> StreamSession:
    """The stream session, or ``session_not_found``."""
    session = await streams.get(session_id)
    if session is None:
        raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
    return session


async def owned(streams: StreamSessions, claims: Claims, session_id: str) -> StreamSession:
    """The stream session if the caller owns it: ``session_not_found`` before ``forbidden``."""
    session = await existing(streams, session_id)
    if not acts_as_owner(claims, session):
        raise CodedError(ErrorCode.FORBIDDEN, "only the streamer may do this")
    return session


async def performer(streams: StreamSessions, claims: Claims, session_id: str) -> str:
    """Whom a change acts as: the caller, who needs ``update`` (the scripts check they own the
    session); for an ``admin`` token (which grants all) the session's owner."""
    if Permission.ADMIN in claims.perms:
        # An owner never changes, so the script's own owner check still holds after this read.
        return (await existing(streams, session_id)).owner_id
    if not claims.has(Permission.UPDATE):
        await owned(streams, claims, session_id)  # session_not_found, then forbidden, as documented
        raise CodedError(ErrorCode.FORBIDDEN, "the update permission is required")
    return claims.sub


async def set_state(streams: StreamSessions, claims: Claims, session_id: str, action: str) -> dict[str, Any]:
    """Take a state action (the owner check and the transition run in one script)."""
    change = await streams.transition(session_id, action, await performer(streams, claims, session_id))
    return {"session_id": session_id, "state": change.state, "previous": change.previous, "offset": change.offset}


async def submit_clip(
    streams: StreamSessions,
    settings: ClipSettings,
    claims: Claims,
    session_id: str,
    *,
    note: str,
    submission_id: str | None,
    address: str,
    pressed_ago_ms: int = 0,
    day_cap: ClipsDayCap,
) -> dict[str, Any]:
    """Store a viewer's click; the answer never names other viewers. ``address`` (the client's)
    counts against the per-address caps (the session's, and ``day_cap`` over every session)
    only for a guest: signed-in viewers share addresses."""
    caps = ViewerCaps(
        per_viewer=settings.max_per_viewer,
        per_address=settings.max_per_address,
        guest_address=address if claims.guest else "",
    )

    async def submit(may_add: bool) -> Submission:
        return await streams.submit(
            session_id,
            viewer_id=claims.sub,
            submission_id=submission_id or "",
            note=note,
            cooldown_ms=int(settings.cooldown_s * 1000),
            max_clips=settings.max_per_session if may_add else 0,
            caps=caps,
            pressed_ago_ms=pressed_ago_ms,
        )

    result = await day_cap.storing(claims, address, submit)
    clip = result.clip.for_viewer() if result.clip is not None else None
    if result.created and clip is not None:  # stored now: the caller's own click
        # The viewer's other pages (a phone and a laptop, two tabs) show it at once. Only as it is
        # stored: retries are answered past the clip cooldown (they store nothing), and a user's
        # many connections each re-sending one clip made every retry a message to all of them (a
        # square's worth). A lost announcement heals at the other pages' next (re)subscription.
        announcement = OwnClip(session_id=session_id, clip=ViewerClip.model_validate(clip))
        await streams.announce_own_clip(claims.sub, announcement.model_dump_json())
    return {
        "session_id": session_id,
        "clip": clip,
        "created": result.created,
        "deleted": not result.created and clip is None,
        "offset": result.offset,
        "cooldown_s": settings.cooldown_s,
    }


async def set_blocked(
    streams: StreamSessions, claims: Claims, session_id: str, user_id: str, *, blocked: bool
) -> dict[str, Any]:
    """Block or unblock a viewer, by the owner (the script checks ownership again)."""
    acting = await performer(streams, claims, session_id)
    changed = await streams.set_blocked(session_id, user_id, acting, blocked=blocked)
    return {"session_id": session_id, "user_id": user_id, "blocked": blocked, "changed": changed}


async def clear_viewer(streams: StreamSessions, claims: Claims, session_id: str, user_id: str) -> dict[str, Any]:
    """Remove every clip of one viewer, by the owner."""
    acting = await performer(streams, claims, session_id)
    cleared = await streams.clear_viewer(session_id, user_id, acting)
    return {"session_id": session_id, "user_id": user_id, "removed": cleared.removed, "offset": cleared.offset}
