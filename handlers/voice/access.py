"""Loading a voice session on behalf of a performer, with the access checks of seed 002."""

from __future__ import annotations

from auth.access import read_scope, require_read, require_update
from auth.claims import Claims, Permission
from handlers.connection import Connection
from protocol.errors import CodedError, ErrorCode
from storage.voice.repository import Performer, VoiceSession, VoiceSessions


async def _existing(voice: VoiceSessions, session_id: str) -> VoiceSession:
    session = await voice.get(session_id)
    if session is None:
        raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
    return session


async def readable(voice: VoiceSessions, claims: Claims, session_id: str) -> VoiceSession:
    """The session, if it exists (``session_not_found``) and may be read (``forbidden``)."""
    session = await _existing(voice, session_id)
    require_read(claims, session.owner_id)
    return session


async def updatable(voice: VoiceSessions, claims: Claims, session_id: str) -> VoiceSession:
    """The session, if it exists and may be read and changed by the performer."""
    session = await _existing(voice, session_id)
    require_update(claims, session.owner_id)
    return session


def performer(claims: Claims) -> Performer:
    """The performer as the voice scripts check it (the same rule as ``updatable``)."""
    return Performer(user_id=claims.sub, read_scope=read_scope(claims), may_update=claims.has(Permission.UPDATE))


def connection_performer(conn: Connection) -> Performer:
    """:func:`performer` of the connection's claims, made once per connection (they never change)."""
    found = conn.derived.get(performer)
    if found is None:
        found = conn.derived[performer] = performer(conn.claims)
    assert isinstance(found, Performer)
    return found
