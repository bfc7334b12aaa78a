"""Access rules: who may read and who may change a session."""

from __future__ import annotations

from auth.claims import Claims, Permission
from protocol.errors import CodedError, ErrorCode


def can_read(claims: Claims, owner_id: str) -> bool:
    """``read_all``, or ``read_own`` on one's own session."""
    if claims.has(Permission.READ_ALL):
        return True
    return claims.has(Permission.READ_OWN) and claims.sub == owner_id


def read_scope(claims: Claims) -> str:
    """``all``, ``own`` or ``none``: the claims' side of the read rule, for checks done in Redis."""
    if claims.has(Permission.READ_ALL):
        return "all"
    return "own" if claims.has(Permission.READ_OWN) else "none"


def require_read(claims: Claims, owner_id: str) -> None:
    """Raise ``forbidden`` unless the performer may read the session."""
    if not can_read(claims, owner_id):
        raise CodedError(ErrorCode.FORBIDDEN, "no read access to this session")


def require_update(claims: Claims, owner_id: str) -> None:
    """Raise ``forbidden`` unless the performer may read the session and has ``update``."""
    require_read(claims, owner_id)
    if not claims.has(Permission.UPDATE):
        raise CodedError(ErrorCode.FORBIDDEN, "the update permission is required")


def require_permission(claims: Claims, permission: Permission) -> None:
    """Raise ``forbidden`` unless the token grants ``permission``."""
    if not claims.has(permission):
        raise CodedError(ErrorCode.FORBIDDEN, f"the {permission.value} permission is required")
