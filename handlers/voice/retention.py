"""Deleting a voice session: its record, materials, chunks and audio files go together.

The script deletes what lives in the session's hash slot; the owner's list, active pointer
and the audio files on disk follow in the kind's ``on_delete``, owed before the script runs
and retried if they fail or are cut off (``handlers.cleanups``).
"""

from __future__ import annotations

from aiohttp import web

from handlers.cleanups import delete_owing
from handlers.context import Services
from handlers.http_common import bearer_claims, guarded
from handlers.ids import parse_session_id
from handlers.voice.access import performer
from handlers.voice.answers import VoiceDeleted


class RetentionRoutes:
    """``DELETE /voicebot/sessions/{session_id}`` (the owner only)."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the route to ``app``."""
        app.router.add_delete("/voicebot/sessions/{session_id}", guarded(self.delete))

    async def delete(self, request: web.Request) -> web.Response:
        """Delete the session; subscribers get a last ``session_update`` with ``deleted: true``."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        freed = await delete_owing(self._s, session_id, lambda _: self._s.voice.delete(session_id, performer(claims)))
        return web.json_response(VoiceDeleted(deleted=True, session_id=session_id, freed_bytes=freed).wire())
