"""The claims sessionhub reads from a token, validated strictly."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Permission(StrEnum):
    """Permissions after seed 002 (``VOICEBOT_SESSIONS.*``), lower-cased."""

    READ_ALL = "read_all"
    READ_OWN = "read_own"
    CREATE = "create"
    UPDATE = "update"
    PROCESS = "process"
    ADMIN = "admin"


# User ids end up inside Redis keys and hash tags: no braces, no spaces, bounded length.
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

GUEST_PERMISSIONS: tuple[Permission, ...] = (Permission.READ_OWN, Permission.CREATE, Permission.UPDATE)


class Claims(BaseModel):
    """A verified token's claims. Unknown claims are ignored, known ones must be well formed."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    sub: str = Field(pattern=USER_ID_PATTERN)
    exp: int
    name: str = Field(default="", max_length=200)
    telegram_user_id: str = Field(default="", max_length=64, pattern=r"^[0-9]*$")
    perms: tuple[Permission, ...] = ()
    guest: bool = False

    def has(self, permission: Permission) -> bool:
        """True when the token grants ``permission`` (``admin`` grants all)."""
        return permission in self.perms or Permission.ADMIN in self.perms
