"""The pattern sharing API, compatible with the seed's origin app (Keyboardia).

Its error bodies are the origin app's (``{"error": "Validation failed", "details": [...]}``,
``{"error": "Session not found"}``), not sessionhub's ``{error: code, message}``: the app's own
clients read them. The API takes no token; one, when sent and valid, only names the author.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from handlers.cleanups import delete_owing
from handlers.context import Services
from handlers.errors import REDIS_DISK, REDIS_FULL, classify
from handlers.http_common import HELD_TOO_MUCH, client_address, read_body
from handlers.idempotency import address_owner, derived_id, idempotent
from handlers.metrics import Metrics
from handlers.patterns.api_errors import ApiError, validation_failed
from handlers.patterns.config import PatternConfig
from handlers.patterns.requests import CreateBody, PatchBody, PutBody
from handlers.patterns.state import DEFAULTS
from handlers.patterns.views import (
    Created,
    Health,
    Published,
    Remixed,
    Renamed,
    Replaced,
    etag,
    full_view,
    lineage_name,
    parent_name_now,
    session_url,
)
from protocol import wire_json
from protocol.errors import CodedError, ErrorCode
from storage.events import Position
from storage.patterns.layout import compact_size
from storage.idempotency import again_on_lost_reply
from storage.patterns.repository import CreationCount, CreationWait, Lineage, PatternRecord, PatternSessions

# The origin app's words (its live-session.ts and session-allocator.ts; its tests read them).
IMMUTABLE_ERROR = "Session is published"
IMMUTABLE_MESSAGE = "This session has been published and cannot be modified. Remix it to create an editable copy."
ALREADY_PUBLISHED = "Cannot publish from an already-published session. Remix it first to create an editable copy."

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Seconds a client is told to wait when Redis does not answer (503).
UNAVAILABLE_RETRY_AFTER_S = 1
_CODED: dict[ErrorCode, tuple[int, dict[str, Any]]] = {
    ErrorCode.SESSION_NOT_FOUND: (404, {"error": "Session not found"}),
    ErrorCode.FORBIDDEN: (403, {"error": IMMUTABLE_ERROR, "message": IMMUTABLE_MESSAGE, "immutable": True}),
    ErrorCode.PAYLOAD_TOO_LARGE: (413, {"error": "Request body too large"}),
}


def answering(handler: Route, metrics: Metrics | None = None) -> Route:
    """Every failure as a JSON answer in the origin app's shape; never a stack trace.

    Redis not answering is ``503 {"error": "Service unavailable"}`` with ``Retry-After``, as
    elsewhere in the server (``handlers.errors.classify``), counted on ``metrics``.
    """

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        except ValidationError as exc:
            return validation_failed(exc).response()
        except CodedError as exc:
            if exc.code is ErrorCode.UNAVAILABLE:
                # A change applied but not confirmed durable in time (SESSIONHUB_DURABILITY):
                # the documented 503 with its Retry-After, and what happened in `message`.
                headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}
                unconfirmed = {"error": "Service unavailable", "message": exc.message}
                return web.json_response(unconfirmed, status=503, headers=headers)
            status, body = _CODED.get(exc.code, (exc.code.http_status, {"error": exc.message}))
            return web.json_response(body, status=status)
        except Exception as exc:
            if metrics is not None:
                metrics.redis_error("http", exc)
            coded = classify(exc)  # logs it, once per cause
            if coded.code is ErrorCode.UNAVAILABLE:
                wait_s = int(coded.details.get("retry_after_s", UNAVAILABLE_RETRY_AFTER_S))
                headers = {"Retry-After": str(wait_s)}
                answer: dict[str, Any] = {"error": "Service unavailable"}
                # Redis at its maxmemory, or unable to write its disk: said as every other route
                # says it (PROTOCOL).
                if coded.details.get("reason") in (REDIS_FULL, REDIS_DISK):
                    answer.update(reason=coded.details["reason"], message=coded.message)
                return web.json_response(answer, status=503, headers=headers)
            return web.json_response({"error": "Internal server error"}, status=500)

    return wrapper


# Any 8-4-4-4-12 hex UUID is a well-formed id, as the origin app's validation.ts has it: one no
# session has (the nil UUID, another version) is 404 like any unknown id, not 400. Ids this
# server makes are v4 all the same.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse_id(request: web.Request) -> str:
    """The path's session id (lower-cased), or 400 ``Invalid session ID format`` for a non-UUID."""
    candidate = request.match_info["session_id"].lower()
    if not _UUID.fullmatch(candidate):
        raise ApiError(400, "Invalid session ID format")
    return candidate


def if_match(request: web.Request) -> Position | None:
    """The ``If-Match`` precondition as a log position; None when absent or ``*``."""
    raw = request.headers.get("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    tag = raw.strip().removeprefix("W/").strip('"')
    epoch, _, offset = tag.rpartition(":")
    # A malformed tag matches no position, so the write is refused with 412 like a stale one.
    return Position(epoch=epoch or "\x00", offset=int(offset) if offset.isdigit() else -1)


class PatternRoutes:
    """``/api/sessions`` and ``/api/health``."""

    def __init__(self, services: Services, patterns: PatternSessions, config: PatternConfig) -> None:
        self._s = services
        self._patterns = patterns
        self._config = config

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/api/health", self.health)
        metrics = self._s.metrics
        anyone = address_owner(self._s)
        create = idempotent(self.create, self._s, "pattern_create", owner_of=anyone)
        app.router.add_post("/api/sessions", answering(create, metrics))
        app.router.add_get("/api/sessions/{session_id}", answering(self.get, metrics))
        # Keyed too: an auto-save whose answer was lost is sent again with its key, and answered
        # as the first was, not 412 by its own change (nor applied again over a newer edit).
        put = idempotent(self.put, self._s, "pattern_put", owner_of=anyone)
        app.router.add_put("/api/sessions/{session_id}", answering(put, metrics))
        patch = idempotent(self.patch, self._s, "pattern_patch", owner_of=anyone)
        app.router.add_patch("/api/sessions/{session_id}", answering(patch, metrics))
        app.router.add_delete("/api/sessions/{session_id}", answering(self.delete, metrics))
        remix = idempotent(self.remix, self._s, "pattern_remix", owner_of=anyone)
        app.router.add_post("/api/sessions/{session_id}/remix", answering(remix, metrics))
        publish = idempotent(self.publish, self._s, "pattern_publish", owner_of=anyone)
        app.router.add_post("/api/sessions/{session_id}/publish", answering(publish, metrics))

    async def health(self, request: web.Request) -> web.Response:
        """The origin app's health probe."""
        return web.json_response(Health(status="ok").model_dump())

    # --- edges -----------------------------------------------------------------------------
    async def _body(self, request: web.Request, *, json_only: bool) -> Any:
        """The parsed JSON body; None when absent or (``json_only``) not declared as JSON."""
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "Request body too large", maxBytes=limit)  # decided before reading
        if json_only and request.content_type != "application/json":
            return None
        try:
            # Read to its end: one read() returns only what has arrived (a split or chunked body).
            raw = await read_body(request, limit)
        except CodedError as exc:
            if exc.code is ErrorCode.PAYLOAD_TOO_LARGE:
                raise ApiError(413, "Request body too large", maxBytes=limit) from None
            if exc.message == HELD_TOO_MUCH:
                raise ApiError(400, "Too many unfinished request bodies: send it again") from None
            raise ApiError(400, "Request body did not arrive in time") from None
        if not raw.strip():
            return None
        try:
            # NaN and Infinity parse here, to be refused by the validators naming their field.
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
            raise ApiError(400, "Invalid JSON") from None

    def _author(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ""
        try:
            claims = self._s.tokens.verify(token.strip())
        except CodedError:
            return ""  # the API takes no token: a bad one names nobody, it refuses nothing
        return claims.sub if claims.exp > self._s.clock.now_s() else ""

    async def _counted(self, request: web.Request) -> CreationCount:
        """One creation counted for the client's address (429 past a limit)."""
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        config = self._config
        wait = await self._patterns.creation_allowed(
            address, limit=config.creates_per_min, limit_per_day=config.creates_per_day
        )
        if isinstance(wait, CreationWait):
            per = config.creates_per_min if wait.window == "minute" else config.creates_per_day
            raise ApiError(
                429,
                "Too many requests",
                headers={"Retry-After": str(wait.retry_after_s)},
                message=f"At most {per} sessions a {wait.window}; try again later.",
                retryAfter=wait.retry_after_s,
            )
        return wait

    async def _write_counted(self, request: web.Request) -> None:
        """One whole-state write (PUT or PATCH) counted for the client's address: 429 past
        ``writes_per_min``, before anything is read or stored. Each write may carry a 64 KB state
        to every watcher of the session and the API takes no token, so without it one address
        could send thousands a second (socket ops are held to the per-connection event rate)."""
        address = client_address(request, trust_forwarded_for=self._s.trust_forwarded_for)
        limit = self._config.writes_per_min
        wait_s = await self._s.limiter.wait_s("pattern_write", address, limit=limit, window_s=60)
        if wait_s:
            raise ApiError(
                429,
                "Too many requests",
                headers={"Retry-After": str(wait_s)},
                message=f"At most {limit} changes a minute from one address; try again later.",
                retryAfter=wait_s,
            )

    async def _room(self, what: str) -> None:
        """503 (the origin app's shape, ``reason: "storage_full"``) while the storage guard
        refuses new things: nothing is counted or stored."""
        try:
            await self._s.storage_guard.admit(what)
        except CodedError as exc:
            wait_s = int(exc.details.get("retry_after_s", UNAVAILABLE_RETRY_AFTER_S))
            raise ApiError(
                503,
                "Service unavailable",
                headers={"Retry-After": str(wait_s)},
                reason=exc.details.get("reason"),
                message=exc.message,
                retryAfter=wait_s,
            ) from None

    async def _made(self, request: web.Request) -> PatternRecord | None:
        """The session a run of this keyed request made before, its node killed before the
        answer was kept (handlers/idempotency.py): the answer again, nothing counted or made."""
        record_id = derived_id(request, "session")
        loaded = await self._patterns.load(record_id, touch=False) if record_id else None
        return loaded[0] if loaded else None

    async def _create(self, request: web.Request, what: str, **kwargs: Any) -> PatternRecord:
        await self._room(what)
        counted = await self._counted(request)
        try:
            record_id = derived_id(request, "session")
            return await self._patterns.create(author_id=self._author(request), record_id=record_id, **kwargs)
        except BaseException:
            await self._patterns.creation_failed(counted)  # only accepted creations count
            raise

    async def _writable(self, session_id: str) -> None:
        """404 for no such session, 403 for a published one: answered before the body is
        validated, so a client is told it may not change the session rather than how its
        change is wrong (the write's own script checks both again, atomically)."""
        writable = await self._patterns.writable(session_id)
        if writable is None:
            raise ApiError(404, "Session not found")
        if not writable:
            raise ApiError(403, IMMUTABLE_ERROR, message=IMMUTABLE_MESSAGE, immutable=True)

    async def _existing(self, session_id: str, *, touch: bool = False) -> tuple[PatternRecord, Position]:
        loaded = await self._patterns.load(session_id, touch=touch)
        if loaded is None:
            raise ApiError(404, "Session not found")
        return loaded

    def _fits(self, state: dict[str, Any]) -> None:
        """413 for a state that, as stored (its defaults filled in), is more than a PUT body can
        carry back. The body alone was measured: one just under the limit, stored with the
        fields it left out, could not be saved again, even unchanged (audit "patternphone")."""
        size = compact_size(state)
        if size > self._config.max_state_bytes:
            raise ApiError(413, "Request body too large", maxBytes=self._config.max_body_bytes, stateBytes=size)

    # --- routes ----------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        """``{name?, state?}`` or a bare state; a body not declared as JSON gives a default session."""
        body = CreateBody.parse(await self._body(request, json_only=True))
        given = body.initial_state()
        state = given.initial() if given is not None else copy.deepcopy(DEFAULTS)
        self._fits(state)
        record = await self._made(request) or await self._create(request, "pattern_create", state=state, name=body.name)
        body_out = Created(id=record.id, url=session_url(record.id), createdAt=record.created_at)
        return web.json_response(body_out.model_dump(), status=201)

    async def get(self, request: web.Request) -> web.Response:
        """The whole session; loading marks it accessed (the orphan flag is from before)."""
        session_id = parse_id(request)
        now = self._s.clock.now_ms()
        record, position = await self._existing(session_id, touch=True)
        orphaned = now - record.last_accessed_at >= self._config.orphan_days * 86_400_000
        parent_name = await parent_name_now(self._patterns, record)
        view = full_view(dataclasses.replace(record, last_accessed_at=now), orphaned=orphaned, parent_name=parent_name)
        # orjson: a large state took ~1.3 ms to encode with json.dumps, for anyone with the link.
        headers = {"ETag": etag(position), "Cache-Control": "no-store"}
        return web.json_response(view, headers=headers, dumps=wire_json.dumps)

    async def put(self, request: web.Request) -> web.Response:
        """Replace the whole state (``If-Match`` guards against clobbering live edits)."""
        session_id = parse_id(request)
        raw = await self._body(request, json_only=False)
        await self._writable(session_id)
        body = PutBody.parse(raw)
        state = body.state.to_json()
        self._fits(state)
        now = self._s.clock.now_ms()
        position = await self._replace(
            request, session_id, state=state, name=None, now_ms=now, keep=body.state.kept_when_absent()
        )
        body_out = Replaced(id=session_id, updatedAt=now, trackCount=len(state["tracks"]))
        return web.json_response(body_out.model_dump(), headers={"ETag": etag(position)})

    async def patch(self, request: web.Request) -> web.Response:
        """Rename and/or replace the state; the name trimmed, empty meaning none."""
        session_id = parse_id(request)
        raw = await self._body(request, json_only=False)
        await self._writable(session_id)
        body = PatchBody.parse(raw)
        state = body.state.to_json() if body.state is not None else None
        if state is not None:
            self._fits(state)
        keep = body.state.kept_when_absent() if body.state is not None else ()
        name = (body.name or None,) if "name" in body.model_fields_set else None
        now = self._s.clock.now_ms()
        position = await self._replace(request, session_id, state=state, name=name, now_ms=now, keep=keep)
        if name is None:
            record, _ = await self._existing(session_id)
            name = (record.name,)
        body_out = Renamed(id=session_id, name=name[0], updatedAt=now)
        return web.json_response(body_out.model_dump(), headers={"ETag": etag(position)})

    async def _replace(
        self,
        request: web.Request,
        session_id: str,
        *,
        state: dict[str, Any] | None,
        name: tuple[str | None] | None,
        now_ms: int,
        keep: tuple[str, ...] = (),
    ) -> Position:
        await self._write_counted(request)
        event: dict[str, Any] = {"by": self._author(request)}
        if name is not None:
            event["name"] = name[0]
        try:
            return await self._patterns.replace(
                session_id, state=state, name=name, expected=if_match(request), event=event, now_ms=now_ms, keep=keep
            )
        except CodedError as exc:
            if exc.code is not ErrorCode.PRECONDITION_FAILED:
                raise
        record, position = await self._existing(session_id)
        raise ApiError(
            412,
            "Precondition failed",
            headers={"ETag": etag(position)},
            message="The session changed since your copy; merge with the current state and retry.",
            etag=etag(position),
            session=full_view(record, orphaned=False),
        )

    async def delete(self, request: web.Request) -> web.Response:
        """Delete the session (a published one cannot be)."""
        session_id = parse_id(request)
        await delete_owing(
            self._s, session_id, lambda record: self._patterns.delete(session_id, author_id=record.get("author_id", ""))
        )
        return web.Response(status=204)

    async def remix(self, request: web.Request) -> web.Response:
        """A new editable copy whose lineage names this one; the parent's count goes up by one.

        The copy starts unnamed (it is the remixer's now, "Untitled Session" on its page) and
        caches the parent's name for its lineage line, as the origin app does.
        """
        made = await self._made(request)
        if made is not None and made.remixed_from:  # by a run before whose node died: counted again once
            record, parent_id = made, made.remixed_from
        else:
            parent, _ = await self._existing(parse_id(request))
            lineage = Lineage(parent, parent_name=lineage_name(parent))
            record = await self._create(request, "pattern_remix", state=parent.state, name=None, lineage=lineage)
            parent_id = parent.id
        try:
            # Counted once however often it runs: a lost reply is run again, not answered 503
            # for a remix that was counted.
            await again_on_lost_reply(lambda: self._patterns.count_remix(parent_id, child=record), redis=self._s.redis)
        except CodedError as exc:
            if exc.code is not ErrorCode.SESSION_NOT_FOUND:
                raise  # the parent was deleted meanwhile: the copy stands, its lineage says "Unknown Session"
        body = Remixed(id=record.id, remixedFrom=parent_id, url=session_url(record.id), createdAt=record.created_at)
        return web.json_response(body.model_dump(), status=201)

    async def publish(self, request: web.Request) -> web.Response:
        """A new read-only copy; the source stays editable."""
        made = await self._made(request)
        if made is not None and made.source_id:  # by a run before whose node died
            record, source_id = made, made.source_id
        else:
            source, _ = await self._existing(parse_id(request))
            if source.immutable:
                raise ApiError(400, ALREADY_PUBLISHED)
            lineage = Lineage(source, parent_name=lineage_name(source), immutable=True)  # keeps the name too
            record = await self._create(
                request, "pattern_publish", state=source.state, name=source.name, lineage=lineage
            )
            source_id = source.id
        await self._patterns.add_child(source_id, child=record)  # a source deleted meanwhile: no tree to join
        body = Published(
            id=record.id, immutable=True, url=session_url(record.id), sourceId=source_id, createdAt=record.created_at
        )
        return web.json_response(body.model_dump(), status=201)
