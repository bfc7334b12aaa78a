"""``GET /voicebot/sessions/{session_id}/materials``: what was sent to a session through the chat
bot (texts, voice notes, photos, documents), in arrival order, a page at a time.

The bot answers each material with "Добавлено в сессию: <link>", and the page that link opens
showed none of it until a Done built the digest, and then only a count and the texts (audit
"telegram"): the page lists them from here, and adds each `material_added` event as it comes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ConfigDict, Field

from handlers.answers import Answer
from handlers.context import Services
from handlers.http_common import bearer_claims, guarded
from handlers.ids import parse_session_id
from handlers.query import QueryModel, at_most, parse_query
from handlers.voice.access import readable


class MaterialsQuery(QueryModel):
    """``?after=&limit=``: the page after the first ``after`` materials."""

    after: int = Field(default=0, ge=0, description="how many materials the pages before held (the last page's next)")
    limit: int = Field(default=100, ge=1, description="at most SESSIONHUB_LIST_LIMIT")


class MaterialView(Answer):
    """A material as stored (fields a newer release adds come along)."""

    model_config = ConfigDict(extra="allow")

    material_id: str
    kind: str = Field(description="voice, audio, text, photo, document")
    text: str = Field(default="", description="a text's words, or a file's caption")
    file_id: str | None = Field(default=None, description="the chat platform's file id")
    duration_s: float | None = None
    added_by: str
    added_at: int = Field(description="unix ms")


class MaterialList(Answer):
    """``GET /voicebot/sessions/{session_id}/materials``."""

    session_id: str
    materials: list[MaterialView]
    next: int | None = Field(description="the `after` of the next page; null on the last")


class MaterialRoutes:
    """The session's chat materials, for whoever may read the session."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        app.router.add_get("/voicebot/sessions/{session_id}/materials", guarded(self.list_materials))

    async def list_materials(self, request: web.Request) -> web.Response:
        """A page of the session's materials, oldest first."""
        session_id = parse_session_id(request.match_info["session_id"])
        query = parse_query(MaterialsQuery, request)
        limit = at_most("limit", query.limit, self._s.limits.list_limit)
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        await readable(self._s.voice, claims, session_id)
        page: list[dict[str, Any]] = await self._s.voice.material_page(session_id, start=query.after, count=limit + 1)
        more = len(page) > limit
        body = {"session_id": session_id, "materials": page[:limit], "next": query.after + limit if more else None}
        return web.json_response(body)
