"""Short-lived signed links to one chunk's audio.

An ``<audio>`` element cannot send an ``Authorization`` header and sessionhub keeps its tokens
out of cookies, so the player gets a link signed for one chunk and a few minutes: a copied or
logged link exposes that one chunk until it expires, where a token in the query string would
expose the whole account. The HMAC key is random, kept in Redis so every node checks the same.
"""

from __future__ import annotations

import hashlib
import hmac
import re
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
    h: str = Field(default="", description="the start of the chunk's sha256 the link was made for (signed)")


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

    def _sign(self, key: bytes, session_id: str, chunk_id: str, exp_s: int, content: str) -> str:
        # A link of the release before signed no content (``content`` empty): its message is
        # unchanged, so such a link still plays while it lives (a rolling upgrade).
        tail = f"/{content}" if content else ""
        message = f"{session_id}/{chunk_id}/{exp_s}{tail}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    async def link(self, session_id: str, chunk_id: str, sha256: str) -> tuple[str, int]:
        """The signed path for the chunk whose audio is ``sha256``, and its expiry (unix s).

        The chunk's content is signed too: chunk ids are counted, so a Redis restored from an older
        backup hands out the same ids again for other audio, and a link made before played that
        (audit "restore")."""
        exp_s = int(self._clock.now_s()) + self._ttl_s
        content = sha256[:CONTENT_CHARS]
        sig = self._sign(await self._secret(), session_id, chunk_id, exp_s, content)
        return f"/voicebot/audio/{session_id}/{chunk_id}?exp={exp_s}&h={content}&sig={sig}", exp_s

    async def check(self, session_id: str, chunk_id: str, link: AudioLinkQuery) -> str:
        """Raise ``forbidden`` for a bad signature, ``unauthorized`` for an expired link; the start
        of the sha256 it was made for ('' for a link of the release before, which signed none)."""
        exp_raw, sig, content = link.exp, link.sig, link.h
        if not exp_raw.isdigit() or len(exp_raw) > 12 or len(sig) != 64 or not _CONTENT.match(content):
            raise CodedError(ErrorCode.FORBIDDEN, "not a valid audio link")
        expected = self._sign(await self._secret(), session_id, chunk_id, int(exp_raw), content)
        if not hmac.compare_digest(expected, sig):
            raise CodedError(ErrorCode.FORBIDDEN, "not a valid audio link")
        if int(exp_raw) <= self._clock.now_s():
            raise CodedError(ErrorCode.UNAUTHORIZED, "the audio link has expired; reload the page")
        return content


# How much of the chunk's sha256 a link carries (64 bits: no other audio of a session shares it).
CONTENT_CHARS = 16
_CONTENT = re.compile(rf"^(?:[0-9a-f]{{{CONTENT_CHARS}}})?$")
