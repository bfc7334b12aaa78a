"""Event type names: the Socket.IO event names of log entries and of the server's own notices.

Lua scripts never spell an event type: Python passes the name in (see ``storage/lua``).
"""

from __future__ import annotations

from typing import Final

# Log entries (``{session_id, epoch, offset, type, ts, data}``), any kind.
SESSION_UPDATE: Final = "session_update"
JOB_RESULT: Final = "job_result"

# Log entries of voice sessions.
SESSION_STATUS: Final = "session_status"
MATERIAL_ADDED: Final = "material_added"

# Server notices that are not log entries.
SESSION_SNAPSHOT: Final = "session_snapshot"
SESSION_RESYNC: Final = "session_resync"
# Told to a connection before it is closed: its device was signed out; its token lost a
# permission (an operator withdrew the user's admin: it connects again with a token minted after).
SIGNED_OUT: Final = "signed_out"
PERMISSIONS_WITHDRAWN: Final = "permissions_withdrawn"
PROTOCOL_ERROR: Final = "protocol_error"
# A change of the user's active voice session (seed 002), to connections that follow it
# (follow_active_session): {"session_id", "seq"}.
ACTIVE_SESSION: Final = "active_session"
# The user's new display name (PATCH /api/auth/me), to the user's connections that follow the
# active session or the user (both follow the user's channel): {"user_id", "name"}.
USER_RENAMED: Final = "user_renamed"
# A clip the user stored in a stream session (on any of their devices), to the user's connections
# that follow the active session or the user (the user's channel): {"session_id", "clip"} (the clip
# as viewers see it). Their /watch pages of that stream show it in "Your clips" at once.
OWN_CLIP: Final = "own_clip"
# The node's link to the user's channel came back: an own_clip may have been missed meanwhile, so
# the user's pages read their own clips again: {} (no field).
OWN_CLIPS_RESYNC: Final = "own_clips_resync"

# Log entries of pattern sessions.
PATTERN_CREATED: Final = "pattern_created"
PATTERN_OP: Final = "pattern_op"
PATTERN_STATE: Final = "pattern_state"
PATTERN_META: Final = "pattern_meta"
PATTERN_DELETED: Final = "pattern_deleted"
PATTERN_PRESENCE: Final = "pattern_presence"

# --- voice: audio chunks and post-processing ----------------------------------------------
# An audio chunk stored for a voice session (seed 002's per-chunk message).
NEW_MESSAGE: Final = "new_message"
# A step of a running post-processing job (results follow as job_result / session_update).
JOB_PROGRESS: Final = "job_progress"
# A stored chunk changed (a transcript was added): data {"chunk": {...}}.
CHUNK_UPDATED: Final = "chunk_updated"

# Log entries of stream sessions (clips).
STREAM_STATE: Final = "stream_state"
SEGMENT_OPENED: Final = "segment_opened"
SEGMENT_CLOSED: Final = "segment_closed"
CLIP_ADDED: Final = "clip_added"
CLIP_UPDATED: Final = "clip_updated"
CLIP_REMOVED: Final = "clip_removed"
# The owner removed every clip of one viewer (data names the viewer by tag only).
CLIPS_CLEARED: Final = "clips_cleared"
# The owner blocked or unblocked a viewer: data {"viewer_tag", "blocked"} (on the stream's log
# and on its audience session's).
VIEWER_BLOCKED: Final = "viewer_blocked"
# On a stream's audience session: the owner edited, deleted or cleared one viewer's clips; data
# {"viewer_tag", "change": "updated" | "removed" | "cleared", "clip_ids"}, and for "cleared"
# "up_to_seq" (the clip seq the clear reached). That viewer's page reads its own clips again;
# nobody else's note goes to the audience.
CLIPS_CHANGED: Final = "clips_changed"

# Log entries of listening histories.
LISTENING_SESSION: Final = "listening_session"
LISTENING_REMOVED: Final = "listening_removed"
LISTENING_CLEARED: Final = "listening_cleared"

# --- admin -----------------------------------------------------------------------------------
# An operator deleted the session from the admin dashboard: data {"id", "by": "admin"}.
SESSION_DELETED: Final = "session_deleted"
