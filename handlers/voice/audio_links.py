"""Short-lived signed links to one chunk's audio.

An ``<audio>`` element cannot send an ``Authorization`` header and sessionhub keeps its tokens
out of cookies, so the player gets a link signed for one chunk and a few minutes: a copied or
logged link exposes that one chunk until it expires, where a token in the query string would
expose the whole account. The HMAC key is random, kept in Redis so every node checks the same.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import Field
from redis.asyncio import Redis

from handlers.query import QueryModel
from protocol.errors import CodedError, ErrorCode
from storage.clock import Clock
from storage.keys import Keys


class AudioLinkQuery(QueryModel):
    """``?exp=&sig=`` of a signed link; a malformed one is a bad signature (403), not a 400."""

    exp: str = Field(default="", description="expiry, unix seconds")
    sig: str = Field(default="", description="HMAC-SHA256, 64 hex digits")


class AudioLinks:
    """Signs and checks ``/voicebot/audio/<session>/<chunk>?exp=…&sig=…`` links."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._ttl_s = ttl_s
        self._key: bytes | None = None

    async def _secret(self) -> bytes:
        if self._key is None:
            name = self._keys.voice_audio_link_key()
            # SET NX: the first node to need a key makes it; everyone reads the same one.
            await self._redis.set(name, secrets.token_hex(32), nx=True)
            value = await self._redis.get(name)
            self._key = str(value).encode()
        return self._key

    def _sign(self, key: bytes, session_id: str, chunk_id: str, exp_s: int) -> str:
        message = f"{session_id}/{chunk_id}/{exp_s}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    async def link(self, session_id: str, chunk_id: str) -> tuple[str, int]:
        """The signed path and its expiry (unix s)."""
        exp_s = int(self._clock.now_s()) + self._ttl_s
        sig = self._sign(await self._secret(), session_id, chunk_id, exp_s)
        return f"/voicebot/audio/{session_id}/{chunk_id}?exp={exp_s}&sig={sig}", exp_s

    async def check(self, session_id: str, chunk_id: str, exp_raw: str, sig: str) -> None:
        """Raise ``forbidden`` for a bad signature, ``unauthorized`` for an expired link."""
        if not exp_raw.isdigit() or len(exp_raw) > 12 or len(sig) != 64:
            raise CodedError(ErrorCode.FORBIDDEN, "not a valid audio link")
        expected = self._sign(await self._secret(), session_id, chunk_id, int(exp_raw))
        if not hmac.compare_digest(expected, sig):
            raise CodedError(ErrorCode.FORBIDDEN, "not a valid audio link")
        if int(exp_raw) <= self._clock.now_s():
            raise CodedError(ErrorCode.UNAUTHORIZED, "the audio link has expired; reload the page")
