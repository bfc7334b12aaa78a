"""Listening payloads at the edge: strict types, bounded sizes and numbers, no unknown fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints

from handlers.ids import UUID4_ANY_CASE_PATTERN
from handlers.payloads import Payload, RequestId
from handlers.query import QueryModel
from handlers.wording import worded

# One line of plain text: no C0/C1 control characters (they would end up in CSV exports and pages),
# no line or paragraph separators, no bidi embeddings, overrides or isolates (a title
# "x\u202eevil.mp3" read "x3pm.live" on /history; refused as in every other text: audit exports).
_NOT_PLAIN = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ONE_LINE = "one line of plain text: no control characters, line breaks or bidi controls"
_PRINTABLE = worded(rf"^[^{_NOT_PLAIN}]*$", _ONE_LINE)


def _not_blank(value: str) -> str:
    # Spaces only showed as a blank row on /history, its Delete named "Delete session of    ".
    if not value.strip():
        raise ValueError("needs a character other than spaces")
    return value


ItemId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=worded(rf"^[^{_NOT_PLAIN}]+$", _ONE_LINE)),
    AfterValidator(_not_blank),
]
# The id a report or an upload writes: also nothing unseen that would make it another item than
# the one it reads as. A byte-order mark (a player reading its ids from a file that begins with
# one), a zero-width space or word joiner, or a space at either end made "book-1" a second book,
# with its own totals and a row that looked the same (audit "listenhonest"). Stored ids are still
# looked up as they are (``ItemId``): one written before this rule stays reachable.
_INVISIBLE = r"\ufeff\u200b\u2060"
_NEW_ID_WORDS = (
    "one line of plain text: no control characters, line breaks, bidi controls or invisible characters "
    "(U+FEFF, U+200B, U+2060), and no space at its start or end"
)
NewItemId = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=200,
        pattern=worded(
            rf"^[^ {_NOT_PLAIN}{_INVISIBLE}]([^{_NOT_PLAIN}{_INVISIBLE}]*[^ {_NOT_PLAIN}{_INVISIBLE}])?$", _NEW_ID_WORDS
        ),
    ),
    AfterValidator(_not_blank),
]
DeviceId = Annotated[
    str,
    StringConstraints(pattern=worded(r"^[A-Za-z0-9_.:\-]{1,64}$", "1 to 64 letters, digits or _ . : - (no spaces)")),
]
ClientId = Annotated[
    str,
    StringConstraints(pattern=worded(r"^[A-Za-z0-9_.:\-]{1,128}$", "1 to 128 letters, digits or _ . : - (no spaces)")),
]
Text = Annotated[str, StringConstraints(max_length=300, pattern=_PRINTABLE)]
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
# Taken in any case, as every id is (handlers.ids), and used in its canonical lower-case form.
ListeningId = Annotated[str, StringConstraints(pattern=UUID4_ANY_CASE_PATTERN), AfterValidator(str.lower)]
# "/..." is a path of this site; "//host" and "/\\host" are another host's (browsers read a
# backslash as a slash), so a path's second character is neither. No backslash anywhere.
_URL_CHAR = r"[^\s\x00-\x1f\x7f\\]"
ArtworkUrl = Annotated[
    str,
    StringConstraints(
        max_length=2000,
        pattern=worded(
            rf"^(https?://{_URL_CHAR}*|/([^/\s\x00-\x1f\x7f\\]{_URL_CHAR}*)?)$",
            "an http(s) URL, or a path of this site, with no spaces or backslashes",
        ),
    ),
]

# A later instant than any listening session (year 2286): the bound of ``from``/``to``.
MAX_MS = 9_999_999_999_999
CURSOR_PATTERN = r"^([0-9]{1,15}):([0-9a-f-]{36})$"

# A position or an item length past a week is not an audiobook, it is a bug.
MAX_POSITION_S = 7 * 86400
# An offline session longer than a day is refused: no player plays unattended that long.
MAX_UPLOAD_SPAN_MS = 86_400_000


class ItemMeta(Payload):
    """What a player knows about the item; stored once per item."""

    title: Text | None = None
    artist: Text | None = None
    album: Text | None = None
    artwork_url: ArtworkUrl | None = None
    duration_s: float | None = Field(default=None, ge=0, le=MAX_POSITION_S, allow_inf_nan=False)


def _ago_only_when_stopping(schema: dict[str, Any]) -> None:
    """Say in the published schema what ``model_post_init`` refuses: ``ago_ms`` or ``pause_id``
    with ``playing``, ``continues`` with a pause or stop."""
    schema["if"] = {"properties": {"status": {"const": "playing"}}, "required": ["status"]}
    schema["then"] = {"properties": {"ago_ms": {"const": 0}, "pause_id": {"const": None}}}
    schema["else"] = {"properties": {"continues": {"const": None}}}


class ReportBody(Payload):
    """``POST /api/listening/report``."""

    model_config = ConfigDict(json_schema_extra=_ago_only_when_stopping)

    item_id: NewItemId
    status: Literal["playing", "paused", "stopped"]
    device_id: DeviceId = "default"
    position_s: float | None = Field(default=None, ge=0, le=MAX_POSITION_S, allow_inf_nan=False)
    item: ItemMeta | None = None
    ago_ms: int = Field(
        default=0,
        ge=0,
        le=MAX_UPLOAD_SPAN_MS,
        description="a pause or stop sent late (pressed offline): how many ms before this report it was "
        "pressed, on the player's own clock; the session ends then. Only with paused or stopped",
    )
    pause_id: ClientId | None = Field(
        default=None,
        description="the press's own id, chosen by the player (the same for every send of one press): a "
        "pause or stop sent again after it was applied changes nothing. Only with paused or stopped",
    )

    continues: ClientId | None = Field(
        default=None,
        description="with playing: the id of the listening session this play continues, on the player's "
        "word that it played on without a stop since that session's last report was answered (its node "
        "was down, the network gone, past the silence that ended it): that session is taken up again "
        "over the silence, as one play, if it is the device's last, of this item, ended by the silence "
        "(not paused), at most a day ago and nothing was played since; else it is ignored",
    )

    def model_post_init(self, context: object) -> None:
        if self.ago_ms and self.status == "playing":
            raise ValueError("ago_ms is for a pause or stop, not playing")
        if self.pause_id is not None and self.status == "playing":
            raise ValueError("pause_id is for a pause or stop, not playing")
        if self.continues is not None and self.status != "playing":
            raise ValueError("continues is for playing, not a pause or stop")


class ReportEvent(ReportBody):
    """``listening_report``: the history session id names the log the change goes to."""

    session_id: str


class UploadBody(Payload):
    """``POST /api/listening/upload``: one finished session of an offline player."""

    item_id: NewItemId
    device_id: DeviceId
    client_id: ClientId
    started_at: int = Field(ge=0)
    ended_at: int = Field(ge=0)
    item: ItemMeta | None = None
    sent_at: int | None = Field(
        default=None,
        ge=0,
        description="the player's clock as it sends this upload (unix ms): the server places started_at "
        "and ended_at on its own clock by the difference, so a device clock set minutes or days wrong "
        "uploads what it played at the right time",
    )

    def model_post_init(self, context: object) -> None:
        if self.ended_at <= self.started_at:
            raise ValueError("ended_at must be after started_at")
        if self.sent_at is not None and self.sent_at < self.ended_at:
            raise ValueError("sent_at must not be before ended_at (both on the player's clock)")
        if self.ended_at - self.started_at > MAX_UPLOAD_SPAN_MS:
            raise ValueError("an uploaded session may last at most 24 hours")


class UploadEvent(UploadBody):
    """``listening_upload``."""

    session_id: str


class DeleteEvent(Payload):
    """``listening_delete``."""

    session_id: str
    id: ListeningId


def _literally_true(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true")
    return value


# A strict bool that must be true. Not ``Literal[True]``: pydantic matches a literal by equality,
# even in strict mode, so 1 and 1.0 (equal to True) passed for it and wiped a whole history.
LiterallyTrue = Annotated[bool, AfterValidator(_literally_true), Field(json_schema_extra={"const": True})]


class ClearBody(Payload):
    """``POST /api/listening/clear``: ``confirm`` must be literally true; ``request_id`` (one
    per press) makes a resend after a lost answer that press, not a second clear."""

    confirm: LiterallyTrue
    request_id: RequestId | None = None


class ClearEvent(ClearBody):
    """``listening_clear``."""

    session_id: str


class PageQuery(QueryModel):
    """``GET /api/listening/sessions``: newest first, by cursor, by item, within ``from``..``to`` (ms)."""

    limit: int = Field(default=50, ge=1, description="at most SESSIONHUB_LIST_LIMIT")
    from_ms: int = Field(default=0, ge=0, le=MAX_MS, alias="from")
    to_ms: int = Field(default=MAX_MS, ge=0, le=MAX_MS, alias="to")
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN, description="next_cursor of the previous page")
    item_id: ItemId | None = None


class StatsQuery(QueryModel):
    """``GET /api/listening/stats``: the days shown, split at midnight in ``tz``."""

    # The shape of a zone name is published (handlers/listening/stats.py's _TZ_NAME); which names
    # exist is the zone database's, which no schema can list portably.
    tz: str = Field(
        default="UTC",
        max_length=64,
        description="an IANA time zone name, e.g. Europe/Berlin",
        json_schema_extra={"pattern": r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}$"},
    )
    days: int = Field(default=30, ge=1, le=366)


class ExportQuery(QueryModel):
    """``GET /api/listening/export``."""

    format: Literal["json", "csv"] = "json"
    # As the stream exports' (handlers/streams/queries.py): Excel reads a CSV without a BOM in the
    # machine's legacy code page, and Arabic, Hindi or Japanese titles came out garbled (audit
    # "localeworld").
    bom: Literal["0", "1"] = Field(default="0", description="1: a CSV starts with a UTF-8 BOM (for Excel)")
