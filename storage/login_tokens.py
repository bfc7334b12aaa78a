"""One-time login tokens (seed 002 ``/login``, device links): stored by hash, redeemed at most once."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from storage.keys import Keys
from storage.scripts import plain_script, refused

# How long a redeemed token's redemption may be sent again by the page that sent it (with the
# same attempt id): as long as a refresh's answer may be sent again (the rotation grace).
RESEND_GRACE_S = 60


class LoginTokens:
    """Issue and redeem single-use tokens that stand for a set of claims."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._redeem = plain_script(redis, "identity/link_redeem.lua")

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
        claims: dict[str, Any] | None = json.loads(raw) if raw else None
        return None if claims is None or "redeemed" in claims else claims

    async def redeem(self, token: str, attempt: str, *, device: str) -> Redemption | None:
        """The claims behind ``token``, once, and the device the redemption opens: ``device`` for
        the first one; None for a second redemption, or an expired or unknown token.

        With an ``attempt`` (an id the redeeming page chose and sent with the token), the same
        attempt redeeming again within :data:`RESEND_GRACE_S` (the page's first answer was lost,
        or it sent the redemption again while the first was on its way) gets the claims again
        and the first one's device, chosen in the same atomic step that took the link: however
        many of them race, they open one device. Another attempt, or none, is refused as before.
        """
        args = [_digest(attempt) if attempt else "", device, RESEND_GRACE_S]
        result = await self._redeem(keys=[self._keys.login_token(_digest(token))], args=args)
        if refused(result):
            return None
        outcome, raw, opened = result
        return Redemption(json.loads(raw), device=str(opened), again=outcome == "again")


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redeemed token's claims, the device the redemption opens, and whether it is the same
    page's redemption sent again (``again``: that device may be open already)."""

    claims: dict[str, Any]
    device: str
    again: bool = False


def _digest(token: str) -> str:
    # Only the hash is stored: a copy of the database does not hold usable login links.
    return hashlib.sha256(token.encode()).hexdigest()
