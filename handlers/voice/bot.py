"""The chat-bot side of seed 002: commands and incoming materials, for the token's user.

A bot adapter (Telegram or another chat) forwards what its user typed or sent, with a token
for that user; replies carry the text the bot should answer with. The active session changes
only through ``/start``, ``/session <id|link>`` and the creation a material may cause when no
open session is active; ``/done`` closes the active session and clears it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import uuid
from typing import Any

from aiohttp import web

from auth.claims import Claims
from handlers.context import Services
from handlers.auth_cookie import public_base
from handlers.http_common import bearer_claims, client_address, guarded, json_body
from handlers.idempotency import HEADER, derived_id, idempotent
from handlers.ids import parse_session_ref
from handlers.payloads import BotCommand, CreateSession, Material, validate
from handlers.voice.access import updatable
from handlers.voice.actions import brief, close, create_active
from handlers.voice.answers import BotAnswer, MaterialAttached
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from storage.idempotency import again_on_lost_reply
from storage.voice.quota import Reservation, UploadQuota
from storage.voice.repository import VoiceSession
from storage.voice.route_lock import RouteLock

NO_ACTIVE_SESSION = "Активная сессия не найдена..."
# Said after "Активная сессия: <link>" when that session is closed: seed 002 makes it active all
# the same, and routes a material to a new session when the active one is not open.
ACTIVE_IS_CLOSED = (
    "Сессия закрыта: новые материалы начнут новую сессию. "
    "The session is closed: what you send next starts a new session (/start names one)."
)
# In any case: a phone's keyboard capitalises the first letter (``/Done``).
_COMMAND = re.compile(r"^/([A-Za-z_]+)(?:@\w+)?(?:\s+(.*))?$", re.DOTALL)
# What ``_find_reference`` looks for in a quoted message: a session path or a bare id, and a link's
# scheme before the path. Each is fixed-width or short; the old single pattern
# ``(?:https?://\S+?)?/session/…`` backtracked: its lazy ``\S+?`` rescanned the rest of the word
# from every ``http://``, so 4 KB of ``http://`` cost ~30 ms of the event loop per command.
_REF = re.compile(r"/session/[0-9A-Fa-f-]{36}|[0-9A-Fa-f]{8}-[0-9A-Fa-f-]{27}")
_SESSION_PATH = re.compile(r"/session/[0-9A-Fa-f-]{36}")
_SCHEME = re.compile(r"https?://")
_WORD = re.compile(r"\S+")


def press_of(idempotency_key: str) -> str:
    """The ``request_id`` a ``/done`` sent with ``idempotency_key`` closes with ("" for none).

    The key's stored answer covers a lost reply; a try that closed the session and then failed
    (its node died, Redis went away before the answer was stored) leaves the key free, and its
    retry, the same press, would close the session again. As ``session_done``'s ``request_id``
    it is answered as that press. Hashed: a key may be any text, a request id is
    ``[A-Za-z0-9_-]{8,64}``.
    """
    if not idempotency_key:
        return ""
    return "key-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


class BotRoutes:
    """``POST /voicebot/bot/command`` and ``POST /voicebot/materials``."""

    def __init__(self, services: Services) -> None:
        self._s = services
        config = services.voice.config
        self._materials_per_min = config.materials_per_min
        self._commands_per_min = config.bot_commands_per_min
        # Material bytes count against the same daily quota as audio: one budget per payer.
        self._quota = UploadQuota(services.redis, services.keys, config.upload_quota_bytes)
        # ... and against one of their own: they are stored in Redis's memory, not on disk, and
        # the audio's gigabyte a day let one address's guests (free to mint, 60 materials a
        # minute each) put ~1 GiB a day into Redis.
        self._material_quota = UploadQuota(services.redis, services.keys, config.material_quota_bytes, materials=True)
        self._routing = RouteLock(services.redis, services.keys)

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_post("/voicebot/bot/command", guarded(idempotent(self.command, self._s, "bot_command")))
        app.router.add_post("/voicebot/materials", guarded(idempotent(self.material, self._s, "material")))

    async def _request(self, request: web.Request) -> tuple[Claims, dict[str, Any]]:
        claims = bearer_claims(request, self._s.tokens, self._s.clock)
        return claims, await json_body(request, max_bytes=self._s.limits.max_payload_bytes)

    def _address(self, request: web.Request) -> str:
        # The bot adapter's address when it calls for its users: the per-address create limit
        # then caps the adapter as a whole, as it should cap any one client.
        return client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)

    async def command(self, request: web.Request) -> web.Response:
        """Run one of ``/start``, ``/session [id|link]``, ``/done``, ``/login``."""
        claims, body = await self._request(request)
        message = validate(BotCommand, body)
        base = public_base(request, self._s.public_url)
        result = await self.run_command(
            claims,
            message.text,
            message.reply_to_text,
            address=self._address(request),
            base_url=base,
            request_id=press_of(request.headers.get(HEADER, "")),
            session_id=derived_id(request, "session"),
        )
        return web.json_response(BotAnswer.model_validate(result).wire())

    async def run_command(
        self,
        claims: Claims,
        text: str,
        reply_to_text: str | None,
        *,
        address: str,
        base_url: str = "",
        request_id: str = "",
        session_id: str | None = None,
    ) -> dict[str, Any]:
        """A command for the user of ``claims`` from ``address`` (shared by this route and chat adapters).

        ``base_url`` starts the links it answers (``/login``): SESSIONHUB_PUBLIC_URL, else the
        origin the request was addressed to. ``request_id`` names the message (a chat's update):
        its redelivery closes nothing twice with ``/done`` (``session_done``'s ``request_id``).
        ``session_id`` names the session a ``/start`` creates (a keyed request's derived id,
        handlers/idempotency.py: a retry after its node died answers the session made before).
        """
        # Counted before anything is parsed: an unknown command or a bad reference costs a try too.
        await self._count_command(claims)
        match = _COMMAND.match(text.strip())
        if match is None:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "text must start with a command")
        name, argument = match.group(1).lower(), (match.group(2) or "").strip()
        base = base_url or self._s.public_url.rstrip("/")
        if name == "login":
            return {"command": "/login", **await self._login(claims, base)}
        if name == "done":
            return {"command": "/done", **await self._done(claims, request_id, address, base)}
        if name == "start":
            return {"command": "/start", **await self._start(claims, argument, address, base, session_id)}
        if name != "session":
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"unknown command /{name}")
        return {"command": "/session", **await self._session(claims, argument, reply_to_text, address, base)}

    async def _count_command(self, claims: Claims) -> None:
        """One of the user's commands this minute; past SESSIONHUB_VOICE_BOT_COMMANDS_PER_MIN,
        ``rate_limited``: each runs Redis reads (and a ``/session`` a search of 4 KB of quoted
        text), and a guest token is free to mint, so nothing else held one client's flood."""
        per_min = self._commands_per_min
        message = f"at most {per_min} bot commands a minute; wait a minute"
        await within(self._s.limiter, "bot_command", claims.sub, limit=per_min, window_s=60, message=message)

    async def _start(
        self, claims: Claims, argument: str, address: str, base: str, session_id: str | None
    ) -> dict[str, Any]:
        name = validate(CreateSession, {"session_name": argument[:200]}).session_name
        session = await create_active(self._s, claims, name, address=address, session_id=session_id)
        return {"reply": f"Новая сессия: {reply_link(base, session.id)}", "active_session": brief(self._s, session)}

    async def _session(
        self, claims: Claims, argument: str, reply_to: str | None, address: str, base: str
    ) -> dict[str, Any]:
        reference = argument or _find_reference(reply_to)
        if reference:
            session = await updatable(self._s.voice, claims, parse_session_ref(reference))
            await self._s.voice.set_active(claims.sub, session.id)
        else:
            active_id = await self._s.voice.active_id(claims.sub)
            found = await self._s.voice.get(active_id) if active_id else None
            if found is None:
                return {"reply": NO_ACTIVE_SESSION, "active_session": None}
            session = found
        reply = f"Активная сессия: {reply_link(base, session.id)}"
        if not session.is_active:  # a person who chose it must not find their next note elsewhere
            reply = f"{reply}\n{ACTIVE_IS_CLOSED}"
        return {"reply": reply, "active_session": brief(self._s, session)}

    async def _done(self, claims: Claims, request_id: str, address: str, base: str) -> dict[str, Any]:
        # Taken from the pointer and cleared in one step: of two /done at once only one closes
        # (reading the pointer, then closing, let both close it and queue two jobs).
        voice = self._s.voice
        active_id, taken_now = await voice.take_active(claims.sub, request_id)
        if active_id is None:
            return {"reply": NO_ACTIVE_SESSION, "active_session": None}
        try:
            closed = await close(self._s, claims, active_id, request_id=request_id, address=address)
        except CodedError as exc:
            if exc.code is ErrorCode.SESSION_NOT_FOUND:  # deleted: the pointer named nothing any more
                return {"reply": NO_ACTIVE_SESSION, "active_session": None}
            await voice.restore_active(claims.sub, active_id)  # a refused /done changes nothing
            raise
        except Exception:
            with contextlib.suppress(Exception):  # Redis gone: a resend of the press closes it
                await voice.restore_active(claims.sub, active_id)
            raise
        closed["active_session_cleared"] = closed["active_session_cleared"] or taken_now
        # "closed" is the session_done ack (PROTOCOL), its "ok" included.
        answer = {"reply": f"Сессия закрыта: {reply_link(base, active_id)}", "active_session": None}
        return {**answer, "closed": {"ok": True, **closed}}

    async def _login(self, claims: Claims, base_url: str) -> dict[str, Any]:
        """A one-time link that signs a browser in as this token's user, never beyond this token.

        The link stands for these very claims (``exp`` included): the token it is exchanged for
        expires no later and grants no more. A guest gets none: a guest token exchanged for a
        login link would otherwise be a way to shed the guest mark or renew it forever.
        """
        if claims.guest:
            raise CodedError(ErrorCode.FORBIDDEN, "guest tokens get no login links; sign in with your account")
        ttl_s = min(self._s.limits.login_link_ttl_s, claims.exp - int(self._s.clock.now_s()))
        if ttl_s < 1:
            raise CodedError(ErrorCode.UNAUTHORIZED, "this token expires too soon to ask for a login link")
        # Each link is a Redis key for its TTL: counted with the user's device links (the same
        # bucket as POST /api/auth/link), else one user kept ~1,800 a second, 2.3 KB each, for 10 min.
        await within(
            self._s.limiter,
            "link",
            claims.sub,
            limit=self._s.limits.signins_per_min,
            window_s=60,
            message="too many login links; wait a minute",
        )
        # When it was made: the user signing out everywhere ends it (handlers/auth_http.py).
        record = {**claims.to_payload(), "made_ms": self._s.clock.now_ms()}
        token = await self._s.login_tokens.issue(record, ttl_s=ttl_s)
        url = f"{base_url}/tg_auth?token={token}"
        return {"reply": url, "login_url": url, "expires_in_s": ttl_s}

    async def material(self, request: web.Request) -> web.Response:
        """Attach a material to the open active session, or to a new one made active."""
        claims, body = await self._request(request)
        material = validate(Material, body)
        ids = (derived_id(request, "material"), derived_id(request, "session"))
        body, status = await self.attach_material(claims, material, address=self._address(request), ids=ids)
        return web.json_response(MaterialAttached.model_validate(body).wire(), status=status)

    async def attach_material(
        self,
        claims: Claims,
        material: Material,
        *,
        address: str,
        ids: tuple[str | None, str | None] = (None, None),
        added_at: int | None = None,
        fetching: bool = False,
    ) -> tuple[dict[str, Any], int]:
        """Route a material as seed 002 says (shared by this route and chat adapters).

        ``ids`` are a keyed request's derived ids (handlers/idempotency.py) of the material and of
        the session it may create: a retry after its node died stores the material once and
        answers the session made before. ``added_at`` (ms, default now): the caller's own record
        of when (a chat adapter's file fetch dates its chunk by it). ``fetching``: the adapter
        fetches the file next (``"audio": "fetching"`` until the fetch says what became of it)."""
        material_id, session_id = ids
        record = {
            "material_id": material_id or str(uuid.uuid4()),
            "kind": material.kind,
            "text": material.text,
            "file_id": material.file_id,
            "duration_s": material.duration_s,
            "added_by": claims.sub,
            "added_at": self._s.clock.now_ms() if added_at is None else added_at,
        }
        if fetching:
            record["audio"] = "fetching"
        # Checked before anything is stored (a refused material creates no session either). A
        # retry with the same Idempotency-Key (or Telegram update) is answered before this runs,
        # so it is never refused or counted twice.
        payers = self._payers(claims, address)
        size_bytes = len(json.dumps(record, separators=(",", ":")).encode())
        reservations = await self._admit(claims, payers, size_bytes)
        try:
            body, status = await self._route(claims, record, address=address, session_id=session_id)
        except BaseException:
            for reservation in reservations:
                await reservation.cancel()  # nothing was stored: the bytes go back
            raise
        return body, status

    def _payers(self, claims: Claims, address: str) -> list[str]:
        # As for audio chunks: a guest token is free to mint, so its address pays too.
        return [f"u:{claims.sub}", f"a:{address}"] if claims.guest else [f"u:{claims.sub}"]

    async def _admit(self, claims: Claims, payers: list[str], size_bytes: int) -> list[Reservation]:
        per_min = self._materials_per_min
        message = f"at most {per_min} materials a minute; wait a minute"
        await within(self._s.limiter, "material", claims.sub, limit=per_min, window_s=60, message=message)
        # Reserved (checked and counted in one step) before it is stored: concurrent materials
        # cannot pass one check together and store more than the quota between them.
        materials = await self._material_quota.reserve(payers, wanted=size_bytes, least=size_bytes)
        if materials is None:
            quota = self._material_quota.limit_bytes
            message = f"the daily quota of chat-bot materials ({quota} bytes) is used up; try again tomorrow"
            raise CodedError(ErrorCode.QUOTA_EXCEEDED, message, quota_bytes=quota)
        try:
            reservation = await self._quota.reserve(payers, wanted=size_bytes, least=size_bytes)
        except BaseException:
            await materials.cancel()
            raise
        if reservation is None:
            await materials.cancel()
            quota = self._quota.limit_bytes
            message = f"the daily upload quota ({quota} bytes) is used up; try again tomorrow"
            raise CodedError(ErrorCode.QUOTA_EXCEEDED, message, quota_bytes=quota)
        return [materials, reservation]

    async def _route(
        self, claims: Claims, record: dict[str, Any], *, address: str, session_id: str | None = None
    ) -> tuple[dict[str, Any], int]:
        made = await self._s.voice.get(session_id) if session_id else None
        if made is not None and made.owner_id == claims.sub:  # a run before made it: the same answer
            again = await create_active(self._s, claims, "", address=address, session_id=session_id)
            return self._attached(again, record, await self._attach(again.id, record), created=True)
        session = await self._open_active(claims)
        if session is not None:
            try:
                return self._attached(session, record, await self._attach(session.id, record), created=False)
            except CodedError as exc:
                if exc.code is not ErrorCode.INVALID_STATE:
                    raise  # closed meanwhile: a new session takes the material, as with none open
        # Materials arriving together with none open (a forwarded batch on parallel connections)
        # each read "none" before any made one: one at a time decides, the others find its session.
        async with self._routing.held(claims.sub):
            session = await self._open_active(claims)
            created = session is None
            if session is None:
                session = await create_active(self._s, claims, "", address=address, session_id=session_id)
        return self._attached(session, record, await self._attach(session.id, record), created=created)

    async def _open_active(self, claims: Claims) -> VoiceSession | None:
        active_id = await self._s.voice.active_id(claims.sub)
        session = await self._s.voice.get(active_id) if active_id else None
        if session is None or not session.is_active:
            return None
        return await updatable(self._s.voice, claims, session.id)

    async def _attach(self, session_id: str, record: dict[str, Any]) -> int:
        async def add() -> tuple[int, int]:
            return await self._s.voice.add_material(session_id, record, max_count=self._s.limits.max_materials)

        # Run again on a lost reply (same material id: stored once), never answered "failed" but kept.
        _, count = await again_on_lost_reply(add, redis=self._s.redis)
        self._s.sessions.used(session_id)
        return count

    def _attached(
        self, session: VoiceSession, record: dict[str, Any], count: int, *, created: bool
    ) -> tuple[dict[str, Any], int]:
        body = {**brief(self._s, session), "material_id": record["material_id"], "created_session": created}
        return {**body, "count": count}, 201


def reply_link(base_url: str, session_id: str) -> str:
    """A session's link as the bot writes it to a person (seed 002: canonical links in what the
    bot shows): absolute, from ``base_url`` (SESSIONHUB_PUBLIC_URL, else the origin the bot's
    request was addressed to); a chat shows a bare ``/session/<id>`` as text nobody can open."""
    return f"{base_url}/session/{session_id}"


def _find_reference(text: str | None) -> str:
    """A session link or id quoted in a message the command replied to ("" for none).

    The first match, as the pattern ``(?:https?://\\S+?)?/session/<36>|<8 hex>-<27>`` would find
    it, in linear time: every match lies inside one word (a run without white space), so the
    first word holding a path or an id holds the answer.
    """
    if not text:
        return ""
    for word in _WORD.finditer(text):
        found = _reference_in(text, word.start(), word.end())
        if found:
            return found
    return ""


def _reference_in(text: str, start: int, end: int) -> str:
    """The first reference within ``text[start:end]``, a word: a link when a scheme comes before
    the first path or id and a ``/session/<id>`` follows it (at least one character after the
    ``://``), else that path or id."""
    found = _REF.search(text, start, end)
    if found is None:
        return ""
    scheme = _SCHEME.search(text, start, end)
    # Only the word's first scheme can start the link: a later one needs a later path still.
    if scheme is not None and scheme.start() < found.start():
        path = _SESSION_PATH.search(text, scheme.end() + 1, end)
        if path is not None:
            return text[scheme.start() : path.end()]
    return found.group(0)
