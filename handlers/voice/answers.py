"""Answer shapes of the voice routes (``/voicebot/*``, the Telegram webhook), as /openapi.json
documents them; the routes build their answers through them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from handlers.answers import Answer, orphan_days_field, orphaned_field

Status = Literal["ready", "recording", "cutting", "paused", "final_uploading", "closed", "error"]
URL = "the session's page, /session/<id> (absolute under SESSIONHUB_PUBLIC_URL when set)"


class VoiceBrief(Answer):
    """The short session shape of seed 002's answers."""

    session_id: str
    session_name: str
    is_active: bool = Field(description="open (not closed by Done)")
    url: str = Field(description=URL)


class VoiceCreated(Answer):
    """``POST /voicebot/create_session``."""

    success: Literal[True]
    session_id: str
    session_name: str
    is_active: bool
    url: str = Field(description=URL)


class VoiceActivated(VoiceCreated):
    """``POST /voicebot/activate_session``: the session now active (open or closed)."""


class ActiveSession(Answer):
    """``POST /voicebot/active_session``."""

    active_session: VoiceBrief | None


class VoiceRecordFields(Answer):
    """A voice session's record, as every reader sees it."""

    session_id: str
    session_name: str
    owner_id: str
    status: Status
    is_active: bool = Field(description="open (not closed by Done)")
    done_count: int
    created_at: int
    updated_at: int
    closed_at: int | None
    chunk_count: int
    audio_ms: int
    storage_bytes: int = Field(description="the storage the session's audio uses")


class ListedVoiceSession(VoiceRecordFields):
    """A session in a listing: no digest or task list (those can be large)."""

    url: str = Field(description=URL)


class VoiceSessions(Answer):
    """``GET /voicebot/sessions``: the caller's own sessions, newest first."""

    sessions: list[ListedVoiceSession]
    active_session_id: str | None


class VoiceSessionView(VoiceRecordFields):
    """``GET /voicebot/sessions/{session_id}``: the record, its log position, and the access."""

    digest: dict[str, Any] | None = Field(description="post-processing's digest; null before the first")
    tasks: list[Any] | None = Field(description="post-processing's task list; null before the first")
    last_job: dict[str, Any] | None = Field(
        description="its last job step or outcome, as the job_progress or job_result event said it, with `at`"
        " (unix ms); null before the first"
    )
    url: str = Field(description=URL)
    epoch: str
    offset: int
    orphaned: bool = orphaned_field()
    orphan_days: int = orphan_days_field()


class VoiceDeleted(Answer):
    """``DELETE /voicebot/sessions/{session_id}``."""

    deleted: Literal[True]
    session_id: str
    freed_bytes: int


class DoneAck(Answer):
    """The ``session_done`` ack (``ok`` included), as ``/done`` answers it in ``closed``."""

    ok: Literal[True]
    session_id: str
    done_count: int
    is_active: Literal[False]
    active_session_cleared: bool
    job_id: str
    repeated: bool = Field(description="a resend of a press already answered: nothing was counted again")


class BotAnswer(Answer):
    """``POST /voicebot/bot/command``: the command run and the bot's reply, with its extra fields."""

    command: Literal["/start", "/session", "/done", "/login"]
    reply: str = Field(description="what the bot answers the user")
    active_session: VoiceBrief | None = Field(default=None, description="every command but /login")
    closed: DoneAck | SkipJsonSchema[None] = Field(default=None, description="/done that closed the active session")
    login_url: str = Field(default="", description="/login: the one-time link (as reply)")
    expires_in_s: int = Field(default=0, description="/login: how long the link is valid")


class MaterialAttached(Answer):
    """``POST /voicebot/materials``: the session that took the material."""

    session_id: str
    session_name: str
    is_active: bool
    url: str = Field(description=URL)
    material_id: str
    created_session: bool = Field(description="no open active session: a new one was made, active, for it")
    count: int = Field(description="the materials the session holds")


class VoiceChunk(Answer):
    """An audio chunk's record."""

    chunk_id: str = Field(description="ch + its sequence number, 6 to 9 digits")
    seq: int
    sha256: str
    mime: str
    size_bytes: int
    start_ms: int = Field(description="on the recorder's clock")
    end_ms: int = Field(description="on the recorder's clock")
    duration_ms: int
    client_duration_ms: int
    duration_source: Literal["webm", "ogg", "wav", "client"]
    speaker: str
    uploaded_by: str
    uploaded_at: int
    transcript: str = Field(default="", description="once transcribed (empty when the run failed)")
    transcript_error: str = Field(default="", description="once transcribed: why there is no transcript, else empty")


class ListedChunk(VoiceChunk):
    """A chunk in the session's list, with its short-lived player link."""

    audio_url: str = Field(description="/voicebot/audio/<session>/<chunk>?exp=…&sig=…, signed")
    audio_url_expires_at: int = Field(description="unix s")


class ChunkUploaded(Answer):
    """``POST /voicebot/chunks``: the chunk stored (201), or the same audio stored before (200)."""

    chunk: VoiceChunk
    duplicate: bool
    offset: int = Field(description="the new_message event's offset; 0 for a duplicate")
    chunk_count: int
    audio_ms: int
    storage_bytes: int
    late: bool = Field(
        default=False,
        description="present (true) only for a late chunk: one recorded before its session closed, taken after"
        " the close (its post-processing runs again)",
    )


class ChunkList(Answer):
    """``GET /voicebot/sessions/{session_id}/chunks``: in start order, then upload order."""

    session_id: str
    chunks: list[ListedChunk]
    chunk_count: int
    audio_ms: int
    storage_bytes: int


class TelegramReply(Answer):
    """The Telegram webhook's reply, a Bot API call in the response body."""

    method: Literal["sendMessage"]
    chat_id: int
    text: str
    reply_to_message_id: int
