"""Access rules: who may read and who may change a session."""

from __future__ import annotations

from auth.claims import Claims, Permission
from auth.errors import AuthError


def can_read(claims: Claims, owner_id: str) -> bool:
    """``read_all``, or ``read_own`` on one's own session."""
    if claims.has(Permission.READ_ALL):
        return True
    return claims.has(Permission.READ_OWN) and claims.sub == owner_id


def require_read(claims: Claims, owner_id: str) -> None:
    """Raise ``forbidden`` unless the performer may read the session."""
    if not can_read(claims, owner_id):
        raise AuthError("forbidden", "no read access to this session")


def require_update(claims: Claims, owner_id: str) -> None:
    """Raise ``forbidden`` unless the performer may read the session and has ``update``."""
    require_read(claims, owner_id)
    if not claims.has(Permission.UPDATE):
        raise AuthError("forbidden", "the update permission is required")


def require_permission(claims: Claims, permission: Permission) -> None:
    """Raise ``forbidden`` unless the token grants ``permission``."""
    if not claims.has(permission):
        raise AuthError("forbidden", f"the {permission.value} permission is required")
