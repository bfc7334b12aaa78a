"""Payload models at the edge: strict types, bounded sizes, no unknown fields."""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from handlers.ids import SESSION_REF_PATTERN, SessionIdText, SessionRefText
from handlers.wording import words_for, worded
from protocol.errors import CodedError, ErrorCode
from protocol.seen_text import seen_size, shows_anything
from storage.voice.repository import STATUSES

# Offsets are Redis stream ids, unsigned 64-bit; far beyond any real log, and bounded so that a
# huge number is a bad payload rather than a Redis error.
MAX_OFFSET = (1 << 63) - 1

ChunkId = Annotated[
    str, StringConstraints(pattern=worded(r"^[A-Za-z0-9_\-]{1,64}$", "1 to 64 letters, digits, _ or -"))
]
# Control characters (C0, DEL, C1), line and paragraph separators, and the invisible characters
# that reorder text (bidi embeddings, overrides, isolates): a name is one line of plain text,
# shown in lists and chat replies where an override would disguise what follows it.
_NOT_PLAIN_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
NOT_PLAIN = re.compile(f"[{_NOT_PLAIN_CLASS}]")
# The same rule as a JSON Schema pattern (published: the OpenAPI document says what is refused).
PLAIN_PATTERN = f"^[^{_NOT_PLAIN_CLASS}]*$"


def plain_text(value: str) -> str:
    """``value`` unchanged, or ValueError naming its first character of :data:`NOT_PLAIN`."""
    found = NOT_PLAIN.search(value)
    if found is not None:
        raise ValueError(f"control character U+{ord(found.group()):04X} is not allowed")
    return value


def _plain_as_sent(value: object) -> object:
    # Before the trim, which would take a leading or trailing U+0085, U+2028 or tab away unseen
    # (the published pattern refuses them); anything but a string is the type check's to refuse.
    return plain_text(value) if isinstance(value, str) else value


SESSION_NAME_MAX_CHARS = 200
SessionName = Annotated[
    str,
    StringConstraints(strip_whitespace=True),
    BeforeValidator(_plain_as_sent),  # after, so it wraps the trim: it sees the text as sent
    AfterValidator(seen_size(SESSION_NAME_MAX_CHARS, "a session name")),  # characters as seen
    Field(json_schema_extra={"pattern": PLAIN_PATTERN}),
]


class Payload(BaseModel):
    """Base of every payload: unknown fields are refused, strings are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class FollowActive(Payload):
    """``{}``: ``follow_active_session`` takes no field (the user is the token's)."""


class RenewToken(Payload):
    """``{token}``: the connection's next access token (``renew_token``)."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class SessionRef(Payload):
    """``{session_id}``: the id itself is checked first, by handlers.ids."""

    session_id: SessionIdText


class Subscribe(SessionRef):
    """``subscribe_on_session``: ``epoch`` and ``offset`` together ask for a replay.

    ``last_id``, the id of the event the client saw at ``offset``, lets the server notice a
    history that Redis rewrote (see storage/events.py).
    """

    epoch: str | None = Field(default=None, max_length=64)
    offset: int | None = Field(default=None, ge=0, le=MAX_OFFSET)
    last_id: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _a_position_is_whole(self) -> Subscribe:
        # An offset means nothing without the epoch it counts in (nor an epoch without a place in
        # it): half a position was answered as no position at all, a snapshot the client did not
        # ask for, so it is refused instead and the client learns its mistake.
        if (self.epoch is None) != (self.offset is None):
            raise ValueError("epoch and offset go together: give both to resume, or neither")
        if self.last_id is not None and self.offset is None:
            raise ValueError("last_id names the event at offset: give it with epoch and offset")
        return self


# A client-chosen id for one press of Done, Process or Tasks (as a clip's submission_id): a
# resend of that press with the same id is answered as the first, never counted or queued again.
RequestId = Annotated[
    str, StringConstraints(pattern=worded(r"^[A-Za-z0-9_\-]{8,64}$", "8 to 64 letters, digits, _ or -"))
]


class VoiceAction(SessionRef):
    """``session_done`` and ``post_process_session``: ``request_id`` makes a resend safe."""

    request_id: RequestId | None = None


class ChunkList(VoiceAction):
    """``create_tasks_from_chunks``."""

    chunk_ids: list[ChunkId] = Field(min_length=1, max_length=100)


class StatusRequest(SessionRef):
    """``set_session_status``."""

    status: str = Field(pattern="^(" + "|".join(STATUSES) + ")$")
    # A recorder saying again that it records (its connection came back): it takes the
    # session's recording lease over from its own gone connection. Without it, a recording
    # status the session already has leaves the lease with whoever holds it.
    resume: bool = False
    # The recorder's own id (the FAB's, the same across its reconnections): a resume, or an own
    # pause, finding another recorder's lease is refused `recording_elsewhere`.
    recorder: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{8,64}$")
    # A recorder's pause of its own recording only: nothing changes while another records.
    own: bool = False


class CreateSession(Payload):
    """``POST /voicebot/create_session``."""

    session_name: SessionName = ""


_BOT_NAME = r"(@[A-Za-z0-9_]+)?"
# What /session takes: an id, or a session link ending in one (handlers.ids.SESSION_REF_PATTERN).
_SESSION_REF = SESSION_REF_PATTERN[1:-1]
# The commands handlers/voice/bot.py knows, each with the argument it accepts.
COMMAND_PATTERN = (
    rf"^(/(login|done){_BOT_NAME}([ \t\n][\s\S]*)?"
    rf"|/start{_BOT_NAME}( [^{_NOT_PLAIN_CLASS}]*)?"
    rf"|/session{_BOT_NAME}([ \t\n]+{_SESSION_REF})?)$"
)


class BotCommand(Payload):
    """``POST /voicebot/bot/command``: a chat message starting with a command."""

    # Published, not checked here: handlers/voice/bot.py answers invalid_payload for text that is
    # no known command, a /start name that is not plain text, a /session argument that is no id or link.
    text: str = Field(min_length=1, max_length=4096, json_schema_extra={"pattern": COMMAND_PATTERN})
    reply_to_text: str | None = Field(default=None, max_length=4096)


# A chat platform's file id, as Telegram makes them: stored and echoed, so held to a plain alphabet.
FILE_ID_PATTERN = r"^[A-Za-z0-9_\-:.]{1,256}$"


class Material(Payload):
    """``POST /voicebot/materials``: what a chat user sent (the file itself stays with the chat)."""

    # model_post_init's rule, published: a text material has text, any other a file_id.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["kind", "text"], "properties": {"kind": {"const": "text"}, "text": {"pattern": r"\S"}}},
                {
                    "required": ["kind", "file_id"],
                    "properties": {"kind": {"enum": ["voice", "photo", "document"]}, "file_id": {"type": "string"}},
                },
            ]
        }
    )

    kind: Literal["voice", "text", "photo", "document"]
    text: str = Field(default="", max_length=4096)
    file_id: str | None = Field(default=None, pattern=FILE_ID_PATTERN)
    duration_s: float | None = Field(default=None, ge=0, le=86400)

    def model_post_init(self, context: object) -> None:
        # Text that shows nothing (zero-width spaces, a lone accent) is no text: it was stored and
        # listed as an empty row (audit "verify50").
        if self.kind == "text" and not shows_anything(self.text):
            raise ValueError("a text material needs text that shows (not only invisible characters)")
        if self.kind != "text" and not self.file_id:
            raise ValueError(f"a {self.kind} material needs file_id")


class OneTimeLogin(Payload):
    """``POST /api/auth/one_time``: any text is a token to look up (one that cannot be a link's,
    such as a link cut short in a copy, is simply unknown: ``401`` with ``reason: "used"``)."""

    token: str = Field(max_length=1024)
    # One per page visit, sent with the token: the same page sending its redemption again (its
    # answer lost) is that redemption, not a link used already (POST /api/auth/one_time).
    attempt: RequestId | None = None


# The lengths a one-time link's token can have; another text is known to be none.
ONE_TIME_TOKEN_CHARS = range(16, 129)


class ActivateSession(Payload):
    """``POST /voicebot/activate_session``."""

    session_id: SessionRefText


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], data: object, *, whole: str = "payload") -> M:
    """The payload as ``model``, or ``invalid_payload`` naming the first problem: its field, or
    ``whole`` for a rule over several fields (``query`` for a query string's model)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or whole
        said = first.get("msg", "invalid")
        if first.get("type") == "string_pattern_mismatch":
            said = words_for(first.get("ctx", {}).get("pattern")) or said  # not the regex itself
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{where}: {said}") from exc
    except ValueError as exc:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, str(exc)) from exc
