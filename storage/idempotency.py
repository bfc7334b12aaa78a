"""Answers remembered by request key, so that a retried request is answered, not applied again.

A client that never got its answer (a lost connection, a timeout, Telegram redelivering an
update) sends the same request again with the same key. The first request *claims* the key
(``SET NX`` of an empty value); when it succeeds, its answer is stored under the key for
``ttl_s``; a retry then gets that answer back without running again. A retry that arrives while
the first is still running is told so (it must not run in parallel), and a request that fails
gives its claim back, so that a retry runs for real.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from redis.asyncio import Redis

from storage.keys import Keys

# How long an answer is kept: longer than any client's or Telegram's retry window.
ANSWER_TTL_S = 24 * 3600
# A claim whose request died with its process is released after this long.
CLAIM_TTL_S = 120


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What the first request answered: HTTP status, content type and body."""

    status: int
    content_type: str
    body: str


class InProgress(Exception):
    """The first request with this key has not finished yet."""


@dataclass(frozen=True, slots=True)
class IdempotentAnswers:
    """Claims keys and stores their answers (see the module docstring)."""

    redis: Redis
    keys: Keys

    async def claim(self, scope: str, owner: str, key: str) -> StoredAnswer | None:
        """None when this request runs (the key is now claimed); the stored answer of an earlier
        one that succeeded; :class:`InProgress` while that one still runs."""
        redis_key = self.keys.idempotent_answer(scope, owner, key)
        if await self.redis.set(redis_key, "", nx=True, ex=CLAIM_TTL_S):
            return None
        stored = await self.redis.get(redis_key)
        if stored is None:  # expired between the two calls: claim it again
            return await self.claim(scope, owner, key)
        if not stored:
            raise InProgress(key)
        fields = json.loads(stored)
        return StoredAnswer(status=int(fields["status"]), content_type=str(fields["type"]), body=str(fields["body"]))

    async def store(self, scope: str, owner: str, key: str, answer: StoredAnswer) -> None:
        """Keep the answer of the request that claimed ``key``."""
        value = json.dumps({"status": answer.status, "type": answer.content_type, "body": answer.body})
        await self.redis.set(self.keys.idempotent_answer(scope, owner, key), value, ex=ANSWER_TTL_S)

    async def release(self, scope: str, owner: str, key: str) -> None:
        """Give a claim back (its request failed): a retry runs again."""
        await self.redis.delete(self.keys.idempotent_answer(scope, owner, key))
