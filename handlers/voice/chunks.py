"""Audio chunks over HTTP: upload (multipart), the ordered list with players, the audio itself."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from auth.claims import Claims
from handlers.context import Services
from handlers.http_common import bearer_claims, client_address, guarded
from handlers.idempotency import idempotent
from handlers.ids import parse_session_id
from handlers.query import one_value, parse_query
from handlers.voice.access import performer, readable, updatable
from handlers.voice.actions import process_late_chunks
from handlers.voice.audio_links import AudioLinkQuery, AudioLinks
from handlers.voice.chunk_form import FORM_OVERHEAD_BYTES, ChunkForm, ChunkMeta, read_chunk_form
from handlers import disk_room
from handlers.voice.disk_reserve import DiskReserve
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from storage.voice.audio_format import ImpossibleDuration, probe
from storage.voice.chunks import ChunkAdded, NewChunk, VoiceChunks
from storage.ratelimit import DAY_S, Counted, Refused
from storage.voice.quota import Reservation, UploadQuota

# The FAB tries these in order and records with the first the browser supports (issue 10).
FAB_MIME_TYPES = (
    "audio/webm;codecs=opus",
    "audio/webm",
    "audio/ogg;codecs=opus",
    "audio/ogg",
    "audio/mp4",
    "audio/aac",
)
UPLOADS_PER_MIN = 120
# Chunks stored per payer (a user, a guest's address) per UTC day: SESSIONHUB_VOICE_CHUNKS_PER_DAY.
CHUNKS_DAY_BUCKET = "voice_chunk_day"
_CHUNK_ID = re.compile(r"^ch[0-9]{6,9}$")


class FabConfig(BaseModel):
    """``GET /voicebot/fab/config``: the chunk limits, and the recording types to try in order."""

    max_chunk_ms: int
    max_chunk_bytes: int
    mime_types: list[str]


def chunk_repository(services: Services) -> VoiceChunks:
    """The chunk repository on the services' Redis (cheap: scripts register without a round trip)."""
    return VoiceChunks(redis=services.redis, keys=services.keys, log=services.log)


# The recorder's clock against the server's (its own `Date.now()` when it sent the upload), at
# most this far either way: a phone's clock set a day wrong says nothing a late chunk can use.
SENT_AT_HEADER = "X-Sent-At"
RECORDER_CLOCK_MAX_MS = 86_400_000


def recorder_behind_ms(request: web.Request, now_ms: int) -> int:
    """How far the recorder's clock runs behind the server's, from ``X-Sent-At`` (its clock when
    it sent this upload; 0 without one): a late chunk's start, on the recorder's clock, is
    compared with the close on the server's. A phone an hour ahead had every chunk it recorded
    offline before a Done pressed elsewhere refused as "after the close" (audit "voicephone").
    The network's time counts as the recorder's lag: at most the upload's first bytes' trip. A
    header, not a form field: a server of the release before ignores it (a field it refuses)."""
    raw = request.headers.get(SENT_AT_HEADER, "")
    # ASCII digits only: str.isdigit() takes "²" and "¹²³", which int() refuses (a 500).
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16:
        return 0
    behind = now_ms - int(raw)
    return behind if abs(behind) <= RECORDER_CLOCK_MAX_MS else 0


class ChunkRoutes:
    """``POST /voicebot/chunks``, ``GET /voicebot/sessions/{id}/chunks``, ``GET /voicebot/audio/…``."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._config = services.voice.config
        self._chunks = chunk_repository(services)
        self._blobs = services.voice.blobs
        self._quota = UploadQuota(services.redis, services.keys, self._config.upload_quota_bytes)
        self._in_flight: dict[str, int] = {}  # payer -> uploads streaming on this node
        self._disk = DiskReserve(
            self._config.blob_dir,
            self._config.disk_reserve_bytes,
            on_refused=lambda: services.disk.refuse(disk_room.RESERVE),
        )
        self._links = AudioLinks(
            redis=services.redis, keys=services.keys, clock=services.clock, ttl_s=self._config.audio_link_ttl_s
        )

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_post("/voicebot/chunks", guarded(idempotent(self.upload, self._s, "chunk")))
        app.router.add_get("/voicebot/sessions/{session_id}/chunks", guarded(self.list_chunks))
        app.router.add_get("/voicebot/audio/{session_id}/{chunk_id}", guarded(self.audio))
        app.router.add_get("/voicebot/fab/config", guarded(self.fab_config))

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    async def upload(self, request: web.Request) -> web.Response:
        """Store one audio chunk of an open session the caller may change."""
        claims = self._claims(request)
        behind_ms = recorder_behind_ms(request, self._s.clock.now_ms())
        limit = self._config.max_chunk_bytes
        # Decided from the headers when they say it, before a byte of the body is read.
        if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD_BYTES:
            raise CodedError(ErrorCode.PAYLOAD_TOO_LARGE, f"a chunk is limited to {limit} bytes", max_bytes=limit)
        await within(
            self._s.limiter,
            "voice_chunk",
            claims.sub,
            limit=UPLOADS_PER_MIN,
            window_s=60,
            message="too many uploads; wait a minute",
        )
        # Before the quota and a byte of the body: a nearly full disk stores no new audio.
        length = request.content_length
        self._disk.admit(limit if length is None else min(length, limit))
        payers = self._payers(request, claims)
        counted = await self._count_today(payers)
        try:
            reservation = await self._reserve(request, payers)
        except BaseException:
            await self._give_back(counted)
            raise
        try:
            admit = await self._admission(request, claims)
            with self._slot(payers):
                form = await self._read(request, admit)
                try:
                    if form.blob.size > reservation.bytes and not await reservation.grow(form.blob.size):
                        raise self._over_quota()
                    chunk = await self._describe(form, claims)
                except BaseException:
                    form.blob.discard()
                    raise
                added = await self._store(form, chunk, claims, behind_ms=behind_ms)
        except BaseException:
            await reservation.cancel()  # refused, cut or failed: it stored nothing
            await self._give_back(counted)
            raise
        if added.late:  # a retry too: its first try may have died before this step
            await process_late_chunks(self._s, claims, form.meta.session_id)
        # A duplicate (the same audio again: a retry) costs nothing; a stored chunk its size, but
        # one whose file an earlier chunk of the same audio holds nothing more.
        await reservation.settle(added.stored_bytes)
        if added.duplicate:
            await self._give_back(counted)
        self._s.sessions.used(form.meta.session_id)
        stored = await self._chunks.get(form.meta.session_id, added.chunk_id)
        body = {"chunk": stored, "duplicate": added.duplicate, "offset": added.offset, **_totals(added)}
        if added.late:
            body["late"] = True
        return web.json_response(body, status=200 if added.duplicate else 201)

    def _payers(self, request: web.Request, claims: Claims) -> list[str]:
        # A guest token is free to mint: its address pays too, so new tokens buy no new quota.
        payers = [f"u:{claims.sub}"]
        if claims.guest:
            payers.append("a:" + client_address(request, trust_forwarded_for=self._s.trust_forwarded_for))
        return payers

    async def _count_today(self, payers: list[str]) -> list[Counted]:
        """Count the chunk for each payer in its UTC day (``SESSIONHUB_VOICE_CHUNKS_PER_DAY``),
        before its body is read; past the cap ``rate_limited`` to the day's end, nothing counted.

        The byte quota alone let tiny chunks through by the million: an 11-byte MP3 (an ``ID3``
        head) was charged 11 bytes, but cost ~550 bytes of Redis (its record, sha and order
        entries) and a 4 KiB block and an inode on disk; a guest's address could store its 500
        sessions' 2,000 chunks each, a million a day."""
        limit = self._config.chunks_per_day
        counted: list[Counted] = []
        for payer in payers:
            taken = await self._s.limiter.take(CHUNKS_DAY_BUCKET, payer, limit=limit, window_s=DAY_S)
            if isinstance(taken, Refused):
                await self._give_back(counted)
                who = "from this address" if payer.startswith("a:") else "per user"
                raise CodedError(
                    ErrorCode.RATE_LIMITED,
                    f"at most {limit} audio chunks a day {who}; try again tomorrow",
                    retry_after_s=taken.retry_after_s,
                )
            counted.append(taken)
        return counted

    async def _give_back(self, counted: list[Counted]) -> None:
        """Uncount a chunk that stored nothing (refused, failed, or a duplicate)."""
        for taken in counted:
            await asyncio.shield(self._s.limiter.give_back(taken))

    async def _reserve(self, request: web.Request, payers: list[str]) -> Reservation:
        """The payers' quota for this upload, taken before its body is read (given back after,
        but for the bytes it stored): concurrent uploads never store more than the quota."""
        limit = self._config.max_chunk_bytes
        length = request.content_length
        if length == 0:  # no form at all: said so, not "the daily quota is used up"
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "the upload is empty: send the chunk as a multipart form")
        # The file is part of the body: it can store no more than the body's length, nor past
        # the chunk cap. A body that says it carries more audio than is left is refused now.
        wanted = limit if length is None else min(length, limit)
        least = 1 if length is None else max(1, length - FORM_OVERHEAD_BYTES)
        reservation = await self._quota.reserve(payers, wanted=wanted, least=least)
        if reservation is None:
            raise self._over_quota()
        return reservation

    def _over_quota(self) -> CodedError:
        quota = self._config.upload_quota_bytes
        message = f"the daily upload quota ({quota} bytes) is used up; try again tomorrow"
        return CodedError(ErrorCode.QUOTA_EXCEEDED, message, quota_bytes=quota)

    async def _admission(self, request: web.Request, claims: Claims) -> Callable[[ChunkMeta], Awaitable[None]]:
        # A session named in the query is checked from the head alone: a foreign or closed one is
        # refused before a byte of the body is read (the form's field must then name it too).
        named = one_value(request.query, "session_id")
        if named is not None:
            named = parse_session_id(named)
            await updatable(self._s.voice, claims, named)

        async def admit(meta: ChunkMeta) -> None:
            if named is not None:
                if meta.session_id != named:
                    raise CodedError(ErrorCode.INVALID_PAYLOAD, "session_id: not the session named in the query")
                return
            await updatable(self._s.voice, claims, meta.session_id)

        return admit

    @contextlib.contextmanager
    def _slot(self, payers: list[str]) -> Iterator[None]:
        """One of the payers' uploads in flight on this node (each streams into a temp file)."""
        cap = self._config.uploads_in_flight
        if any(self._in_flight.get(payer, 0) >= cap for payer in payers):
            raise CodedError(ErrorCode.RATE_LIMITED, f"at most {cap} uploads at once", retry_after_s=1)
        for payer in payers:
            self._in_flight[payer] = self._in_flight.get(payer, 0) + 1
        try:
            yield
        finally:
            for payer in payers:
                count = self._in_flight.pop(payer, 1) - 1
                if count > 0:
                    self._in_flight[payer] = count

    async def _read(self, request: web.Request, admit: Callable[[ChunkMeta], Awaitable[None]]) -> ChunkForm:
        deadline_s = self._config.upload_deadline_s
        try:
            # A stalled client must not hold its temp file (and this handler) for ever: past the
            # deadline the read is cancelled, which discards the file (chunk_form._stream).
            async with asyncio.timeout(deadline_s):
                return await read_chunk_form(
                    request, blobs=self._blobs, max_bytes=self._config.max_chunk_bytes, admit=admit
                )
        except TimeoutError:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"the upload did not arrive within {deadline_s:g} s") from None

    async def _describe(self, form: ChunkForm, claims: Claims) -> NewChunk:
        try:
            info = await asyncio.to_thread(probe, form.blob.temp_path)
        except ImpossibleDuration as exc:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"file: {exc}") from exc
        if info is None:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "file: not an audio format this server stores")
        meta = form.meta
        return NewChunk(
            sha256=form.blob.sha256,
            mime=info.mime,
            size_bytes=form.blob.size,
            start_ms=meta.start_ms,
            end_ms=meta.end_ms,
            duration_ms=info.duration_ms if info.duration_ms is not None else meta.duration_ms,
            client_duration_ms=meta.duration_ms,
            duration_source=info.parser if info.duration_ms is not None and info.parser else "client",
            speaker=meta.speaker,
            uploaded_by=claims.sub,
            uploaded_at=self._s.clock.now_ms(),
        )

    async def _store(self, form: ChunkForm, chunk: NewChunk, claims: Claims, *, behind_ms: int) -> ChunkAdded:
        session_id = form.meta.session_id
        # The file goes into place first, so no subscriber hears of a chunk it cannot play yet.
        try:
            await self._blobs.commit(form.blob, session_id, content_type=chunk.mime)
        except BaseException:  # a full disk, say: the temporary file must not stay behind
            form.blob.discard()
            raise
        try:
            return await self._chunks.add(
                session_id,
                chunk,
                performer(claims),
                max_chunks=self._config.max_chunks,
                late_window_ms=self._config.late_chunks_s * 1000,
                recorder_behind_ms=behind_ms,
            )
        except BaseException:
            if not await self._chunks.is_referenced(session_id, chunk.sha256):
                await self._blobs.remove(session_id, chunk.sha256)
                # Lost a race with the session's deletion: commit made its folder anew.
                await self._blobs.prune(session_id)
            raise

    async def list_chunks(self, request: web.Request) -> web.Response:
        """The session's chunks in order, each with a short-lived player link, and the totals."""
        session_id = parse_session_id(request.match_info["session_id"])
        session = await readable(self._s.voice, self._claims(request), session_id)
        chunks = await self._chunks.list(session_id, limit=self._config.max_chunks)
        for chunk in chunks:
            chunk["audio_url"], chunk["audio_url_expires_at"] = await self._links.link(session_id, chunk["chunk_id"])
        return web.json_response(
            {
                "session_id": session_id,
                "chunks": chunks,
                "chunk_count": session.chunk_count,
                "audio_ms": session.audio_ms,
                "storage_bytes": session.storage_bytes,
            }
        )

    async def audio(self, request: web.Request) -> web.StreamResponse:
        """One chunk's audio, for a signed link (Range requests work: players seek)."""
        session_id = parse_session_id(request.match_info["session_id"])
        chunk_id = request.match_info["chunk_id"]
        if not _CHUNK_ID.match(chunk_id):
            raise CodedError(ErrorCode.NOT_FOUND, "no such chunk")
        link = parse_query(AudioLinkQuery, request)
        await self._links.check(session_id, chunk_id, link.exp, link.sig)
        chunk = await self._chunks.get(session_id, chunk_id)
        byte_range = request.headers.get("Range")
        fetched = await self._blobs.fetch(session_id, str(chunk["sha256"]), byte_range) if chunk else None
        if chunk is None or fetched is None:
            raise CodedError(ErrorCode.NOT_FOUND, "no such chunk")
        headers = {
            "Content-Type": str(chunk["mime"]),
            "Cache-Control": "private, max-age=300",
            "Content-Disposition": "inline",
        }
        if fetched.path is not None:
            return web.FileResponse(fetched.path, headers=headers)  # answers ranges itself
        headers["Accept-Ranges"] = "bytes"
        if fetched.content_range:
            headers["Content-Range"] = fetched.content_range
        return web.Response(body=fetched.body, status=fetched.status, headers=headers)

    async def fab_config(self, request: web.Request) -> web.Response:
        """What the FAB needs to know before it records (no token needed: nothing private)."""
        config = FabConfig(
            max_chunk_ms=self._config.max_chunk_ms,
            max_chunk_bytes=self._config.max_chunk_bytes,
            mime_types=list(FAB_MIME_TYPES),
        )
        return web.json_response(config.model_dump())


def _totals(added: ChunkAdded) -> dict[str, Any]:
    return {"chunk_count": added.chunk_count, "audio_ms": added.audio_ms, "storage_bytes": added.storage_bytes}
