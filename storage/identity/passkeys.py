"""Passkeys in Redis: each user's credentials, the owner of each credential, pending challenges.

The WebAuthn checks themselves are py_webauthn's (``handlers.passkeys_http``); this module only
keeps what they need. A challenge is read with ``GETDEL``: it answers one ceremony, once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

from redis.asyncio import Redis

from storage.clock import Clock
from storage.keys import Keys
from storage.scripts import plain_script

CHALLENGE_TTL_S = 300


@dataclass(frozen=True, slots=True)
class Passkey:
    """One registered passkey."""

    passkey_id: str
    user_id: str
    credential_id: str  # base64url, as the browser names it
    public_key: str  # base64url of the COSE key
    sign_count: int
    created_ms: int
    last_used_ms: int
    label: str
    grant: dict[str, Any]

    def record(self) -> str:
        """The JSON kept in the user's passkey hash."""
        fields = asdict(self)
        del fields["passkey_id"], fields["user_id"]
        return json.dumps(fields)


def passkey_id_of(credential_id: str) -> str:
    """The short, key-safe id of a credential (its id can be up to 1023 bytes)."""
    return hashlib.sha256(credential_id.encode()).hexdigest()[:32]


class Passkeys:
    """Store and find passkeys; issue and take single-use challenges."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._release = plain_script(redis, "identity/passkey_release.lua")

    async def challenge(self, *, challenge: bytes, purpose: str, user_id: str = "") -> str:
        """Keep a ceremony's challenge for ``CHALLENGE_TTL_S``; its id for the client."""
        challenge_id = secrets.token_urlsafe(24)
        value = json.dumps({"challenge": challenge.hex(), "purpose": purpose, "user_id": user_id})
        await self._redis.set(self._keys.webauthn_challenge(challenge_id), value, ex=CHALLENGE_TTL_S)
        return challenge_id

    async def take_challenge(self, challenge_id: str, *, purpose: str) -> tuple[bytes, str] | None:
        """The challenge and its user, once; None when used, expired, unknown or for another purpose."""
        raw = await self._redis.getdel(self._keys.webauthn_challenge(challenge_id))
        if not raw:
            return None
        value = json.loads(raw)
        if value["purpose"] != purpose:
            return None
        return bytes.fromhex(value["challenge"]), value["user_id"]

    async def add(self, passkey: Passkey) -> bool:
        """Register a passkey for its user; False when its credential id is registered already
        (WebAuthn section 7.1, step 22), by anyone: the first registration keeps it.

        The owner is claimed first, in one step (``SET NX``): of two users racing with one
        credential id, one gets it. A claim of this very user's that has no record (a
        registration cut off between the two writes) is finished instead of refused, by one
        ceremony: the record is written only where there is none (``HSETNX``), so of the user's
        ceremonies racing to finish it one does, and the others are told it is registered.
        """
        owner_key = self._keys.passkey_owner(passkey.passkey_id)
        passkeys_key = self._keys.user_passkeys(passkey.user_id)
        claimed = await self._redis.set(owner_key, passkey.user_id, nx=True)
        if not claimed and await self._redis.get(owner_key) != passkey.user_id:
            return False
        return bool(await self._redis.hsetnx(passkeys_key, passkey.passkey_id, passkey.record()))

    async def of_user(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._keys.user_passkeys(user_id)))
        found = [Passkey(passkey_id=pid, user_id=user_id, **json.loads(rec)) for pid, rec in raw.items()]
        return sorted(found, key=lambda p: p.created_ms)

    async def find(self, credential_id: str) -> Passkey | None:
        """The passkey with this credential id, whoever owns it."""
        passkey_id = passkey_id_of(credential_id)
        user_id = cast(str | None, await self._redis.get(self._keys.passkey_owner(passkey_id)))
        if not user_id:
            return None
        raw = cast(str | None, await self._redis.hget(self._keys.user_passkeys(user_id), passkey_id))
        return Passkey(passkey_id=passkey_id, user_id=user_id, **json.loads(raw)) if raw else None

    async def used(self, passkey: Passkey, sign_count: int) -> None:
        """Record a sign-in: the authenticator's new counter and the time."""
        updated = replace(passkey, sign_count=sign_count, last_used_ms=self._clock.now_ms())
        await self._redis.hset(self._keys.user_passkeys(passkey.user_id), passkey.passkey_id, updated.record())

    async def remove(self, user_id: str, passkey_id: str) -> bool:
        """Forget one of the user's passkeys; False when it is not theirs."""
        removed = await self._redis.hdel(self._keys.user_passkeys(user_id), passkey_id)
        if removed:
            await self._release(keys=[self._keys.passkey_owner(passkey_id)], args=[user_id])
        return bool(removed)
