"""Payload models of stream sessions: strict, bounded, unknown fields refused, text cleaned."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StringConstraints

from auth.claims import USER_ID_PATTERN
from handlers.ids import UUID4_ANY_CASE_PATTERN
from handlers.payloads import Payload, SessionRef
from handlers.streams.seen import seen_or_empty, shows_anything
from protocol.seen_text import seen_size

NOTE_MAX_CHARS = 100
# Behind the character count: one character as a person sees it may be any number of code points
# (a flag is 2, a family 7, a "zalgo" letter hundreds); 100 flags or 80 families fit.
NOTE_MAX_BYTES = 2000
TITLE_MAX_CHARS = 200
GAME_MAX_CHARS = 100

# Control characters (category Cc: C0, DEL, C1), line and paragraph separators, and the
# invisible characters that reorder text (bidi embeddings, overrides, isolates): a note is one
# line of plain text. One compiled class: this runs on every click of a raid.
_NOT_PLAIN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _plain_text(value: object) -> object:
    """Refuse the characters of ``_NOT_PLAIN`` anywhere in the text as sent: checked before the
    trim, which would take a leading or trailing U+0085, U+2028, U+2029 or tab away unseen (the
    published pattern refuses them). Anything but a string is the type check's to refuse."""
    if isinstance(value, str) and (found := _NOT_PLAIN.search(value)) is not None:
        raise ValueError(f"control character U+{ord(found.group()):04X} is not allowed")
    return value


# _NOT_PLAIN for the OpenAPI document (a JavaScript regular expression, as JSON Schema's are).
_PLAIN = "[^\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]*"
_PLAIN_SCHEMA = Field(json_schema_extra={"pattern": f"^{_PLAIN}$"})
_PLAIN_NOT_BLANK_SCHEMA = Field(json_schema_extra={"pattern": f"^(?=[\\s\\S]*\\S){_PLAIN}$"})


def _seen_title(value: str) -> str:
    if not shows_anything(value):
        raise ValueError("a title needs a character that shows (not only invisible ones)")
    return value


# Checked as sent, then trimmed, then measured: "at most 100 characters" is about what is stored and
# shown. A note that shows nothing (invisible characters alone) is stored as no note (handlers.streams.seen).
Note = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    BeforeValidator(_plain_text),  # after the trim in this list, so it runs before it (it wraps it)
    AfterValidator(seen_size(NOTE_MAX_CHARS, "a note", max_bytes=NOTE_MAX_BYTES)),
    AfterValidator(seen_or_empty),
    _PLAIN_SCHEMA,
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1),
    BeforeValidator(_plain_text),
    AfterValidator(seen_size(TITLE_MAX_CHARS, "a title")),  # characters as seen (protocol.seen_text)
    AfterValidator(_seen_title),
    _PLAIN_NOT_BLANK_SCHEMA,
]
Game = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    BeforeValidator(_plain_text),
    AfterValidator(seen_size(GAME_MAX_CHARS, "a game")),
    _PLAIN_SCHEMA,
]
SubmissionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-]{8,64}$")]
# Taken in any case, as every id is (handlers.ids), and used in its canonical lower-case form.
ClipId = Annotated[str, StringConstraints(pattern=UUID4_ANY_CASE_PATTERN), AfterValidator(str.lower)]
StateAction = Literal["start", "pause", "resume", "end"]

# The most a click may say it was pressed before it was sent (its clip placed that much earlier):
# a minute covers a connection lost and back, and lets nobody place a clip further back.
MAX_PRESSED_AGO_MS = 60_000


class CreateStream(Payload):
    """``POST /api/streams``."""

    title: Title
    game: Game = ""
    viewer_delay_s: int = Field(default=0, ge=0, le=600)


class StateRequest(Payload):
    """``POST /api/streams/{id}/state`` (the session id comes from the path)."""

    action: StateAction


class StateEvent(SessionRef, StateRequest):
    """``stream_set_state``."""


class ClipRequest(Payload):
    """``POST /api/streams/{id}/clips``: an optional note and an optional client submission id."""

    note: Note = ""
    submission_id: SubmissionId | None = None
    # How long before sending the viewer pressed: a click held by a connection that dropped
    # was stored where it arrived, 5-20 s after the moment pressed (the fourth field audit).
    pressed_ago_ms: int = Field(
        default=0,
        ge=0,
        le=MAX_PRESSED_AGO_MS,
        description="how long before this request the viewer pressed, ms (a click sent late): the clip is placed"
        " at the moment pressed",
    )


class ClipEvent(SessionRef, ClipRequest):
    """``clip_submit``."""


class ClipEdit(Payload):
    """``PATCH /api/streams/{id}/clips/{clip_id}``: at least one of the two."""

    # model_post_init's rule, published: clipped or note, not null.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["clipped"], "properties": {"clipped": {"type": "boolean"}}},
                {"required": ["note"], "properties": {"note": {"type": "string"}}},
            ]
        }
    )

    clipped: bool | None = None
    note: Note | None = None

    def model_post_init(self, context: object) -> None:
        if self.clipped is None and self.note is None:
            raise ValueError("give clipped, note or both")


class ClipEditEvent(SessionRef):
    """``clip_update``."""

    clip_id: ClipId
    clipped: bool | None = None
    note: Note | None = None

    def model_post_init(self, context: object) -> None:
        if self.clipped is None and self.note is None:
            raise ValueError("give clipped, note or both")


class ClipRef(SessionRef):
    """``clip_delete``."""

    clip_id: ClipId


UserId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=USER_ID_PATTERN)]


class ViewerRef(Payload):
    """``POST /api/streams/{id}/blocked``: the viewer (their ``submitted_by``)."""

    user_id: UserId


class ViewerBlockEvent(SessionRef):
    """``stream_block_viewer``: block (default) or unblock a viewer."""

    user_id: UserId
    blocked: bool = True


class ViewerClearEvent(SessionRef):
    """``clip_clear_viewer``: remove every clip of one viewer."""

    user_id: UserId
