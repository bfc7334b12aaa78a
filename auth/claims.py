"""The claims sessionhub reads from a token, validated strictly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import ConfigDict, Field, Strict, TypeAdapter

from auth.numeric_dates import MAX_NUMERIC_DATE_S
from auth.permissions import Permission

__all__ = ["GUEST_PERMISSIONS", "USER_ID_PATTERN", "Claims", "Permission"]


# User ids end up inside Redis keys and hash tags: no braces, no spaces, bounded length.
USER_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"

GUEST_PERMISSIONS: tuple[Permission, ...] = (Permission.READ_OWN, Permission.CREATE, Permission.UPDATE)


# A plain slotted dataclass, validated by pydantic: every connection keeps one for its whole
# life, and a dataclass costs a fraction of a model instance's memory.
@dataclass(frozen=True, slots=True)
class Claims:
    """A verified token's claims. Unknown claims are ignored, known ones must be well formed."""

    __pydantic_config__ = ConfigDict(extra="ignore")

    sub: Annotated[str, Field(pattern=USER_ID_PATTERN)]
    # Strict: pydantic would turn "1700000000" into an int, and a token is signed text we do not
    # repair; RFC 7519 says NumericDate is a JSON number. Strict also refuses true/false, which
    # Python counts as integers.
    exp: Annotated[int, Strict(), Field(ge=0, le=MAX_NUMERIC_DATE_S)]
    name: Annotated[str, Field(max_length=200)] = ""
    telegram_user_id: Annotated[str, Field(max_length=64, pattern=r"^[0-9]*$")] = ""
    perms: tuple[Permission, ...] = ()
    guest: Annotated[bool, Strict()] = False  # "no" would be read as False, "yes" as True
    # The device (refresh family) the token was minted for: revoking the device refuses it.
    fam: Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]*$")] = ""
    # When it was issued (0: not said). Read for one thing: a device token minted before its
    # user's admin permission was withdrawn no longer carries it (auth.tokens).
    iat: Annotated[float, Strict(), Field(ge=0, le=MAX_NUMERIC_DATE_S)] = 0

    def has(self, permission: Permission) -> bool:
        """True when the token grants ``permission`` (``admin`` grants all)."""
        return permission in self.perms or Permission.ADMIN in self.perms

    def to_payload(self) -> dict[str, Any]:
        """The claims as JSON-ready values (for signing)."""
        payload: dict[str, Any] = CLAIMS_ADAPTER.dump_python(self, mode="json")
        return payload


CLAIMS_ADAPTER: TypeAdapter[Claims] = TypeAdapter(Claims)
