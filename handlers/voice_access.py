"""Loading a voice session on behalf of a performer, with the access checks of seed 002."""

from __future__ import annotations

from auth.access import require_read, require_update
from auth.claims import Claims
from handlers.errors import ProtocolError
from storage.voice import VoiceSession, VoiceSessions


async def _existing(voice: VoiceSessions, session_id: str) -> VoiceSession:
    session = await voice.get(session_id)
    if session is None:
        raise ProtocolError("session_not_found", "no such session")
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
