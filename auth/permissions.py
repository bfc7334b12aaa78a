"""The permissions a token may carry, and what each grants.

Kept apart from :mod:`auth.claims` (pydantic): ``sessionhub token --help`` lists them without
importing a validator.
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    """Permissions after seed 002 (``VOICEBOT_SESSIONS.*``), lower-cased."""

    READ_ALL = "read_all"
    READ_OWN = "read_own"
    CREATE = "create"
    UPDATE = "update"
    PROCESS = "process"
    ADMIN = "admin"


# What each permission grants, as docs/PROTOCOL.md ("Authentication") says; shown by `token --help`.
GRANTS: dict[Permission, str] = {
    Permission.READ_ALL: "read and subscribe to every session",
    Permission.READ_OWN: "read and subscribe to the sessions the token's user owns",
    Permission.CREATE: "create sessions (voice, streams, patterns)",
    Permission.UPDATE: "change the sessions the token may read (with read_own or read_all)",
    Permission.PROCESS: "seed 002's post-processing permission; no route checks it today",
    Permission.ADMIN: "every permission, plus /admin, its API and sessionhub admin",
}
