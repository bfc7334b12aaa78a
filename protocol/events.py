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
PROTOCOL_ERROR: Final = "protocol_error"

# Log entries of listening histories.
LISTENING_SESSION: Final = "listening_session"
LISTENING_REMOVED: Final = "listening_removed"
LISTENING_CLEARED: Final = "listening_cleared"
