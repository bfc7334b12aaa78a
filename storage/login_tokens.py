"""One-time login tokens (seed 002 ``/login``): stored by hash, redeemed at most once."""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from redis.asyncio import Redis

from storage.keys import Keys


class LoginTokens:
    """Issue and redeem single-use tokens that stand for a set of claims."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def issue(self, claims: dict[str, Any], *, ttl_s: int) -> str:
        """A fresh token for ``claims``, valid for ``ttl_s`` seconds.

        ``claims`` are the asking token's, ``exp`` included: whoever redeems the link must cap
        what it mints by them.
        """
        if "exp" not in claims:
            raise ValueError("login token claims must carry the asking token's exp")
        token = secrets.token_urlsafe(32)
        await self._redis.set(self._keys.login_token(_digest(token)), json.dumps(claims), ex=ttl_s)
        return token

    async def peek(self, token: str) -> dict[str, Any] | None:
        """The claims behind ``token``, which stays redeemable (None when used or expired)."""
        raw = await self._redis.get(self._keys.login_token(_digest(token)))
        return json.loads(raw) if raw else None

    async def redeem(self, token: str) -> dict[str, Any] | None:
        """The claims behind ``token``, once: a second redemption (or an expired token) gets None."""
        raw = await self._redis.getdel(self._keys.login_token(_digest(token)))
        return json.loads(raw) if raw else None


def _digest(token: str) -> str:
    # Only the hash is stored: a copy of the database does not hold usable login links.
    return hashlib.sha256(token.encode()).hexdigest()
