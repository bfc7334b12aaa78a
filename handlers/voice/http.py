"""Voice-session REST endpoints of seed 002, plus listing and reading one's sessions."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from auth.access import require_permission
from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.idempotency import derived_id, idempotent
from handlers.ids import parse_session_id, parse_session_ref
from handlers.payloads import ActivateSession, CreateSession, validate
from handlers.query import LimitQuery, at_most, parse_query
from handlers.session_gone import explained
from handlers.voice.access import readable, updatable
from handlers.voice.actions import brief, create_active, session_url
from handlers.voice.answers import (
    ActiveSession,
    ListedVoiceSession,
    VoiceActivated,
    VoiceBrief,
    VoiceCreated,
    VoiceSessions,
    VoiceSessionView,
)
from protocol.errors import CodedError
from storage.voice.repository import VoiceSession


class VoiceRoutes:
    """``/voicebot/*``: every route needs a bearer token."""

    def __init__(self, services: Services) -> None:
        self._s = services

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        create = idempotent(self.create_session, self._s, "voice_create")
        app.router.add_post("/voicebot/create_session", guarded(create))
        app.router.add_post("/voicebot/active_session", guarded(self.active_session))
        app.router.add_post("/voicebot/activate_session", guarded(self.activate_session))
        app.router.add_get("/voicebot/sessions", guarded(self.list_sessions))
        app.router.add_get("/voicebot/sessions/{session_id}", guarded(self.get_session))

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    def _brief(self, session: VoiceSession) -> dict[str, Any]:
        return brief(self._s, session)

    def _full(self, session: VoiceSession) -> dict[str, Any]:
        return {**session.public(), "url": session_url(self._s, session.id)}

    async def create_session(self, request: web.Request) -> web.Response:
        """Create a session and make it the caller's active session."""
        claims = self._claims(request)
        require_permission(claims, Permission.CREATE)
        raw = await json_body(request, max_bytes=self._s.limits.max_payload_bytes, optional=True)
        name = validate(CreateSession, ignoring_client_identity(raw)).session_name
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        session_id = derived_id(request, "session")
        session = await create_active(self._s, claims, name, address=address, session_id=session_id)
        return web.json_response(VoiceCreated(success=True, **self._brief(session)).wire(), status=201)

    async def active_session(self, request: web.Request) -> web.Response:
        """The caller's active session, or null."""
        claims = self._claims(request)
        active_id = await self._s.voice.active_id(claims.sub)
        session = await self._s.voice.get(active_id) if active_id else None
        active = VoiceBrief(**self._brief(session)) if session else None
        return web.json_response(ActiveSession(active_session=active).wire())

    async def activate_session(self, request: web.Request) -> web.Response:
        """Make a session the caller's active session (access checked)."""
        claims = self._claims(request)
        body = ignoring_client_identity(await json_body(request, max_bytes=self._s.limits.max_payload_bytes))
        session_id = parse_session_ref(body.get("session_id"))
        validate(ActivateSession, {**body, "session_id": session_id})
        session = await updatable(self._s.voice, claims, session_id)
        await self._s.voice.set_active(claims.sub, session.id)
        self._s.sessions.used(session.id)
        return web.json_response(VoiceActivated(success=True, **self._brief(session)).wire())

    async def list_sessions(self, request: web.Request) -> web.Response:
        """The caller's sessions, newest first (``?limit=`` up to the configured maximum)."""
        claims = self._claims(request)
        if not claims.has(Permission.READ_ALL):
            require_permission(claims, Permission.READ_OWN)
        limit = at_most("limit", parse_query(LimitQuery, request).limit, self._s.limits.list_limit)
        sessions = await self._s.voice.list_for_user(claims.sub, limit=limit)
        active_id = await self._s.voice.active_id(claims.sub)
        # A listing carries no digests or task lists: those can be large; the session itself has them.
        listed = [ListedVoiceSession.model_validate(self._full(s)) for s in sessions]
        return web.json_response(VoiceSessions(sessions=listed, active_session_id=active_id).wire())

    async def get_session(self, request: web.Request) -> web.Response:
        """One session the caller may read; loading it is an access (``orphaned`` is from before)."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        try:
            session = await readable(self._s.voice, claims, session_id)
        except CodedError as exc:
            raise await explained(self._s, session_id, exc) from None
        access = await self._s.sessions.access(session_id)
        position = await self._s.log.position(session_id)
        body = {**self._full(session), "epoch": position.epoch, "offset": position.offset}
        view = VoiceSessionView.model_validate({**body, **(access.public() if access else {})})
        return web.json_response(view.wire())


def ignoring_client_identity(body: dict[str, Any]) -> dict[str, Any]:
    """The body without a client-sent ``telegram_user_id``: seed 002 resolves the user from the
    token only and ignores that field (as the socket events do), rather than refusing it."""
    return {key: value for key, value in body.items() if key != "telegram_user_id"}
