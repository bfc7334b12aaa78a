"""Voice sessions' HTTP routes as documented in /openapi.json (see handlers.openapi_registry)."""

from __future__ import annotations

from functools import partial

from handlers.openapi_registry import MULTIPART, Auth, Header, Operation
from handlers.payloads import ActivateSession, BotCommand, CreateSession, Material
from handlers.query import LimitQuery
from handlers.voice.answers import (
    ActiveSession,
    BotAnswer,
    ChunkList,
    ChunkUploaded,
    MaterialAttached,
    VoiceActivated,
    VoiceCreated,
    VoiceDeleted,
    VoiceSessions,
    VoiceSessionView,
)
from handlers.voice.audio_links import AudioLinkQuery
from handlers.voice.chunk_form import ChunkMeta
from handlers.voice.chunks import FabConfig
from handlers.voice.materials import MaterialList, MaterialsQuery

TAG = "voice"
# The media types the server stores a chunk as (storage/voice/audio_format.py recognises them).
AUDIO_TYPES = ("audio/webm", "audio/ogg", "audio/wav", "audio/mp4", "audio/mpeg", "audio/aac")
READ = (400, 403, 404, 503)
WRITE = (400, 403, 404, 409, 413, 429, 503)

_voice = partial(Operation, tag=TAG)

OPERATIONS: tuple[Operation, ...] = (
    _voice(
        "post",
        "/voicebot/create_session",
        "Create a session and make it the caller's active one",
        body=CreateSession,
        body_required=False,
        statuses=(400, 403, 413, 429, 503),
        ok=(201,),
        idempotent=True,
        response=VoiceCreated,
    ),
    _voice(
        "post",
        "/voicebot/active_session",
        "The caller's active session, or null",
        statuses=(503,),
        response=ActiveSession,
    ),
    _voice(
        "post",
        "/voicebot/activate_session",
        "Make a session (id or link) the caller's active one",
        body=ActivateSession,
        statuses=(400, 403, 404, 413, 503),
        response=VoiceActivated,
    ),
    _voice(
        "get",
        "/voicebot/sessions",
        "The caller's sessions, newest first",
        query=LimitQuery,
        statuses=(400, 403, 503),
        response=VoiceSessions,
    ),
    _voice(
        "get",
        "/voicebot/sessions/{session_id}",
        "One session the caller may read",
        statuses=READ,
        response=VoiceSessionView,
    ),
    _voice(
        "delete",
        "/voicebot/sessions/{session_id}",
        "Delete a session with its materials, chunks and audio (the owner)",
        statuses=(*READ, 409),
        response=VoiceDeleted,
    ),
    _voice(
        "post",
        "/voicebot/bot/command",
        "Run a chat command: /start, /session [id|link], /done, /login",
        body=BotCommand,
        statuses=WRITE,
        idempotent=True,
        response=BotAnswer,
    ),
    _voice(
        "post",
        "/voicebot/materials",
        "Attach a chat material to the active session (or a new one)",
        body=Material,
        statuses=WRITE,
        ok=(201,),
        idempotent=True,
        response=MaterialAttached,
    ),
    _voice(
        "post",
        "/voicebot/chunks",
        "Upload one audio chunk (multipart: the fields, then the file); 200 for a repeat",
        body=ChunkMeta,
        body_type=MULTIPART,
        files=(("file", AUDIO_TYPES),),
        statuses=WRITE,
        ok=(200, 201),
        idempotent=True,
        response=ChunkUploaded,
    ),
    _voice(
        "get",
        "/voicebot/sessions/{session_id}/chunks",
        "The session's chunks in order, each with a short-lived audio link",
        statuses=READ,
        response=ChunkList,
    ),
    _voice(
        "get",
        "/voicebot/sessions/{session_id}/materials",
        "The session's chat materials in arrival order, a page at a time",
        query=MaterialsQuery,
        statuses=READ,
        response=MaterialList,
    ),
    _voice(
        "get",
        "/voicebot/audio/{session_id}/{chunk_id}",
        "One chunk's audio, by the signed link of the chunk list (Range requests work)",
        query=AudioLinkQuery,
        auth=Auth.NONE,
        statuses=(400, 401, 403, 404, 503),
        ok=(200, 206),
        ok_types=AUDIO_TYPES,
        ok_headers=(Header("Content-Disposition", "inline: played in the page", required=True, pattern="^inline$"),),
    ),
    _voice(
        "get", "/voicebot/fab/config", "What the recording button needs to know", auth=Auth.NONE, response=FabConfig
    ),
)
