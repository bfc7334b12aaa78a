"""One-time login tokens (seed 002 ``/login``): stored by hash, redeemed at most once."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from storage.keys import Keys

# How long a redeemed token's redemption may be sent again by the page that sent it (with the
# same attempt id): as long as a refresh's answer may be sent again (the rotation grace).
RESEND_GRACE_S = 60


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

    async def redeem(self, token: str, attempt: str = "") -> Redemption | None:
        """The claims behind ``token``, once: a second redemption (or an expired token) gets None.

        With an ``attempt`` (an id the redeeming page chose and sent with the token), the same
        attempt redeeming again within :data:`RESEND_GRACE_S` (the page's first answer was lost)
        gets the claims again, with the device the first one opened (``replaces``), which the
        caller signs out as it opens another: the page never got its cookie. Another attempt, or
        none, is refused as before: the link's token alone does not open a second device.
        """
        digest = _digest(token)
        raw = await self._redis.getdel(self._keys.login_token(digest))
        if raw:
            if attempt:
                # A second step: a process dying between the two leaves the token used and no
                # resend possible, as before this existed; nothing is opened twice.
                first = {"attempt": _digest(attempt), "claims": raw, "device": ""}
                await self._redis.set(self._keys.login_redeemed(digest), json.dumps(first), ex=RESEND_GRACE_S)
            return Redemption(json.loads(raw), replaces=None)
        if not attempt:
            return None
        found = await self._redis.get(self._keys.login_redeemed(digest))
        mark: dict[str, str] = json.loads(found) if found else {}
        if not mark or not hmac.compare_digest(str(mark["attempt"]), _digest(attempt)):
            return None
        return Redemption(json.loads(mark["claims"]), replaces=str(mark["device"]))

    async def opened(self, token: str, attempt: str, device: str) -> None:
        """Note the device a redemption with ``attempt`` opened (a resend signs it out)."""
        if not attempt:
            return
        key = self._keys.login_redeemed(_digest(token))
        found = await self._redis.get(key)
        if found:
            mark = json.loads(found)
            mark["device"] = device
            await self._redis.set(key, json.dumps(mark), xx=True, keepttl=True)


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redeemed token's claims; ``replaces``: None for the first redemption, else the device
    the first one opened ('' if it had not noted one yet)."""

    claims: dict[str, Any]
    replaces: str | None


def _digest(token: str) -> str:
    # Only the hash is stored: a copy of the database does not hold usable login links.
    return hashlib.sha256(token.encode()).hexdigest()
