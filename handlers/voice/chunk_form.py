"""The multipart form of a chunk upload, read as a stream: small fields first, the file last.

The fields are read (each bounded) and validated, and access is checked, before one byte of
the file is read: a forged or foreign session costs the server nothing but the headers. The
file streams into the blob store, hashed and size-capped as it arrives.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field, model_validator

from handlers.http_common import CUT_BODY, continue_body
from handlers.ids import SessionIdText, parse_session_id
from handlers.payloads import PLAIN_PATTERN, Payload, validate
from protocol.errors import CodedError, ErrorCode
from storage.voice.blobs import Blobs, BlobTooLarge, BlobWriter

REQUIRED_FIELDS = ("session_id", "start_ms", "end_ms", "duration_ms")
FIELD_NAMES = frozenset({*REQUIRED_FIELDS, "speaker"})
MAX_FIELD_BYTES = 256
# Room for the boundaries, part headers and small fields around the file in Content-Length.
FORM_OVERHEAD_BYTES = 16 * 1024
DAY_MS = 86_400_000
_DIGITS = re.compile(r"^[0-9]{1,16}$")


class ChunkMeta(Payload):
    """The small fields of ``POST /voicebot/chunks`` (times in ms; start/end on the recorder's clock)."""

    session_id: SessionIdText
    start_ms: int = Field(ge=0, le=2**53)
    end_ms: int = Field(ge=0, le=2**53)
    duration_ms: int = Field(ge=0, le=DAY_MS)
    speaker: str = Field(default="", max_length=64, pattern=PLAIN_PATTERN)  # one line of plain text

    @model_validator(mode="after")
    def _ordered(self) -> ChunkMeta:
        if self.end_ms < self.start_ms:
            raise ValueError("end_ms must not be before start_ms")
        if self.end_ms - self.start_ms > DAY_MS:
            raise ValueError("a chunk spans at most one day")
        return self


@dataclass(slots=True)
class ChunkForm:
    """A fully read upload: its validated fields and the blob written so far."""

    meta: ChunkMeta
    blob: BlobWriter


async def _small(part: BodyPartReader) -> str:
    raw = b""
    while piece := await part.read_chunk(MAX_FIELD_BYTES):
        raw += piece
        if len(raw) > MAX_FIELD_BYTES:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{part.name}: at most {MAX_FIELD_BYTES} bytes")
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{part.name}: not UTF-8") from exc


def _fields_came_first(fields: dict[str, str]) -> None:
    """At the file part, every required field must have been read. One missing may only come
    after the file (a client that put it last), which is not read to find out: the fields are
    checked before a byte of audio is. So the refusal says both: what is missing, and where."""
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        names = ", ".join(missing)
        raise CodedError(
            ErrorCode.INVALID_PAYLOAD, f"the fields must come before the file part: {names} not sent before it"
        )


def parse_meta(fields: dict[str, str]) -> ChunkMeta:
    """The fields as :class:`ChunkMeta` (numbers must be plain digits)."""
    data: dict[str, object] = {"session_id": parse_session_id(fields.get("session_id"))}
    for name in ("start_ms", "end_ms", "duration_ms"):
        text = fields.get(name)
        if text is None:
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{name}: field required")
        if not _DIGITS.match(text):
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{name}: a whole number of milliseconds")
        data[name] = int(text)
    if "speaker" in fields:
        data["speaker"] = fields["speaker"]
    return validate(ChunkMeta, data)


async def read_chunk_form(
    request: web.Request,
    *,
    blobs: Blobs,
    max_bytes: int,
    admit: Callable[[ChunkMeta], Awaitable[None]],
) -> ChunkForm:
    """Read the form; ``admit`` checks access once the fields are known, before the file is read."""
    if not request.content_type.startswith("multipart/form-data"):
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "the upload must be multipart/form-data")
    fields: dict[str, str] = {}
    form: ChunkForm | None = None
    try:
        await continue_body(request)  # every check made from the headers has passed (chunks.upload)
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise CodedError(ErrorCode.INVALID_PAYLOAD, "nested multipart parts are not accepted")
            if form is not None:
                raise CodedError(ErrorCode.INVALID_PAYLOAD, "the file must be the last part of the form")
            if part.name == "file":
                _fields_came_first(fields)
                meta = parse_meta(fields)
                await admit(meta)
                form = ChunkForm(meta=meta, blob=await _stream(part, blobs, max_bytes))
            elif part.name in FIELD_NAMES and part.name not in fields:
                fields[part.name] = await _small(part)
            else:
                raise CodedError(ErrorCode.INVALID_PAYLOAD, f"unexpected form field {str(part.name)[:32]!r}")
    except BaseException as exc:
        if form is not None:
            form.blob.discard()
        # aiohttp's words for a malformed multipart body: ValueError, or HttpProcessingError for
        # a part header it cannot parse (a field name that is not Latin-1, a bare CR...).
        if isinstance(exc, ValueError | HttpProcessingError):
            raise CodedError(ErrorCode.INVALID_PAYLOAD, "malformed multipart body") from exc
        if isinstance(exc, ConnectionResetError):  # the client left before the form's end
            raise CodedError(ErrorCode.INVALID_PAYLOAD, CUT_BODY) from None
        raise
    if form is None:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "file: the audio file part is required")
    return form


async def _stream(part: BodyPartReader, blobs: Blobs, max_bytes: int) -> BlobWriter:
    writer = blobs.writer(max_bytes)
    try:
        while piece := await part.read_chunk(64 * 1024):
            writer.write(piece)
    except BlobTooLarge as exc:
        raise CodedError(ErrorCode.PAYLOAD_TOO_LARGE, str(exc), max_bytes=max_bytes) from exc
    except BaseException:
        writer.discard()
        raise
    writer.close()
    if writer.size == 0:
        writer.discard()
        raise CodedError(ErrorCode.INVALID_PAYLOAD, "file: the audio file is empty")
    return writer
