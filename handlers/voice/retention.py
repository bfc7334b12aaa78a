"""Deleting a voice session: its record, materials, chunks and audio files go together."""

from __future__ import annotations

import asyncio

from aiohttp import web

from handlers.context import Services
from handlers.http_common import bearer_claims, guarded
from handlers.ids import parse_session_id
from handlers.voice.access import performer
from storage.blobs import BlobStore


class RetentionRoutes:
    """``DELETE /voicebot/sessions/{session_id}`` (the owner only)."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._blobs = BlobStore(services.voice.config.blob_dir)

    def register(self, app: web.Application) -> None:
        """Attach the route to ``app``."""
        app.router.add_delete("/voicebot/sessions/{session_id}", guarded(self.delete))

    async def delete(self, request: web.Request) -> web.Response:
        """Delete the session; subscribers get a last ``session_update`` with ``deleted: true``."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        freed = await self._s.voice.delete(session_id, performer(claims))
        await asyncio.to_thread(self._blobs.remove_session, session_id)
        return web.json_response({"deleted": True, "session_id": session_id, "freed_bytes": freed})
