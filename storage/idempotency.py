"""Answers remembered by request key, so that a retried request is answered, not applied again.

A client that never got its answer (a lost connection, a timeout, Telegram redelivering an
update) sends the same request again with the same key. The first request *claims* the key
(``SET NX`` of an empty value); when it succeeds, its answer is stored under the key for
``ttl_s``; a retry then gets that answer back without running again. A retry that arrives while
the first is still running is told so (it must not run in parallel), and a request that fails
gives its claim back, so that a retry runs for real, at once (:meth:`IdempotentAnswers.release`:
whole after a refusal that made nothing, else keeping the key's generation, below). Only a claim
is given back: a run whose claim ran out (below) and which fails after a retry took the key over
and stored its answer leaves that answer as it is.

A claim is short-lived and renewed while its request runs (:meth:`IdempotentAnswers.running`):
a node killed mid-request leaves a claim that runs out within ``CLAIM_TTL_S``, after which a
retry runs for real (another node cannot tell a dead claimer from a slow one sooner). A fixed
two-minute claim answered every retry of a request whose node had died ``409`` for two minutes.

A caller keeps at most ``max_answers`` keys per scope (route) when the store is bounded
(``core/idempotent_claim.lua``): each new claim drops the caller's oldest keys past the bound,
claims and answers alike. Unbounded, one user (or one address) could keep an answer per request
for a day, as many as it cared to send. A dropped key is a new request again; a request whose
claim was dropped while it ran keeps no answer (:meth:`IdempotentAnswers.store` writes only over
its claim), so nothing outside the bound is ever written.

A request's new objects get ids derived from its key (:func:`derived_id`), not fresh ones: a node
killed after it created an object and before it stored the answer leaves no answer, and the
retry, which runs again, would otherwise create a second object. With the same id, the retry
finds the one the dead node made (each create refuses an id that is taken, in one step in the
object's own slot) and answers it. The ids differ per *claim* of the key (its ``generation``: the
time the key was first claimed, kept in the caller's index while the key is held) and are an
HMAC under a server secret, so they are unguessable and a dropped key is a new request again.

A request that failed *normally* after it may have made something (an exception, a Redis error,
its task cancelled) is the same case without the kill: it gives its claim back but its key stays
in the index (``release(..., keep_generation=True)``), so the retry, run at once, derives the
same ids and answers the object the failed run made. Only a key given back whole (a refusal
before anything was made) is claimed again with a new generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from storage.failures import REDIS_AWAY
from storage.keys import Keys
from storage.scripts import Script, plain_script

log = logging.getLogger(__name__)

# How long an answer is kept: longer than any client's or Telegram's retry window.
ANSWER_TTL_S = 24 * 3600
# A claim whose request died with its process runs out after this long; a running request
# renews its claim every third of it (two renewals may fail before it runs out). Both are read at
# each use, so a test's node may run with a shorter lifetime (tests/test_idempotency.py).
CLAIM_TTL_S = 10  # whole seconds (SET ... EX)
CLAIM_RENEWALS_PER_TTL = 3
# Pause before running a step again whose reply was lost (times the attempt number).
LOST_REPLY_BACKOFF_S = 0.02
# Keys one caller keeps per route on the HTTP routes (handlers/idempotency.py): far more than any
# client retries at once, and a bound on what one caller stores (answers are a few hundred bytes).
MAX_ANSWERS_PER_CALLER = 1000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What the first request answered: HTTP status, content type and body."""

    status: int
    content_type: str
    body: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request runs. ``generation`` names this claim of the key: every run of the key while
    the caller's index holds it (a retry after its first node died, or after it failed and kept
    the key) gets the same one; a key dropped or given back whole and claimed again gets another.
    None on an unbounded store (no index). ``again``: the index held the key already (this is a
    retry of a run that may have made and counted something)."""

    generation: str | None
    again: bool = False


def derived_id(secret: bytes, scope: str, owner: str, key: str, generation: str, purpose: str) -> str:
    """The id (a UUID in its version 4 form) of the object ``purpose`` names that the request of
    ``key`` by ``owner`` in ``scope`` creates: the same for each run of one claim, unguessable
    without ``secret`` (a server's own), another for every key, caller, claim and purpose."""
    message = "\x1f".join((scope, owner, key, generation, purpose)).encode()
    raw = bytearray(hmac.new(secret, message, hashlib.sha256).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4: these ids read as the fresh ones do
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


class InProgress(Exception):
    """The first request with this key has not finished yet."""


@dataclass(frozen=True, slots=True)
class IdempotentAnswers:
    """Claims keys and stores their answers (see the module docstring); at most ``max_answers``
    keys per owner and scope, the oldest dropped first (None: no bound)."""

    redis: Redis
    keys: Keys
    max_answers: int | None = None
    _renew: Script = field(init=False, repr=False, compare=False)
    _claim: Script = field(init=False, repr=False, compare=False)
    _release: Script = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_renew", plain_script(self.redis, "core/claim_renew.lua"))
        object.__setattr__(self, "_claim", plain_script(self.redis, "core/idempotent_claim.lua"))
        object.__setattr__(self, "_release", plain_script(self.redis, "core/claim_release.lua"))

    async def claim(self, scope: str, owner: str, key: str) -> StoredAnswer | None:
        """None when this request runs (the key is now claimed); the stored answer of an earlier
        one that succeeded; :class:`InProgress` while that one still runs."""
        begun = await self.begin(scope, owner, key)
        return None if isinstance(begun, Claimed) else begun

    async def begin(self, scope: str, owner: str, key: str) -> StoredAnswer | Claimed:
        """:class:`Claimed` when this request runs (the key is now claimed); the stored answer of
        an earlier one that succeeded; :class:`InProgress` while that one still runs."""
        redis_key = self.keys.idempotent_answer(scope, owner, key)
        if self.max_answers is not None:
            index = self.keys.idempotent_index(scope, owner)
            lifetimes = [CLAIM_TTL_S * 1000, ANSWER_TTL_S * 1000, self.max_answers]
            claimed, value, *held = await self._claim(keys=[redis_key, index], args=lifetimes)
            if claimed:
                # The index's score, as ms; held: whether the index had the key already.
                return Claimed(generation=str(int(float(_text(value)))), again=bool(held and int(held[0])))
            stored = value
        elif await self.redis.set(redis_key, "", nx=True, ex=CLAIM_TTL_S):
            return Claimed(generation=None)
        else:
            stored = await self.redis.get(redis_key)
            if stored is None:  # expired between the two calls: claim it again
                return await self.begin(scope, owner, key)
        if not stored:
            raise InProgress(key)
        fields = json.loads(stored)
        return StoredAnswer(status=int(fields["status"]), content_type=str(fields["type"]), body=str(fields["body"]))

    @contextlib.asynccontextmanager
    async def running(self, scope: str, owner: str, key: str) -> AsyncIterator[None]:
        """Keep the claim of ``key`` alive while the body runs (the request that claimed it)."""
        renewing = asyncio.create_task(self._keep(self.keys.idempotent_answer(scope, owner, key)))
        try:
            yield
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _keep(self, redis_key: str) -> None:
        while True:
            await asyncio.sleep(CLAIM_TTL_S / CLAIM_RENEWALS_PER_TTL)
            try:
                if not await self._renew(keys=[redis_key], args=[int(CLAIM_TTL_S * 1000)]):
                    return  # answered, given back or run out: nothing to keep
            except REDIS_AWAY as exc:  # a blip: the next renewal may get through
                log.warning("an Idempotency-Key claim could not be renewed: %s", exc)

    async def store(self, scope: str, owner: str, key: str, answer: StoredAnswer) -> None:
        """Keep the answer of the request that claimed ``key``."""
        value = json.dumps({"status": answer.status, "type": answer.content_type, "body": answer.body})
        redis_key = self.keys.idempotent_answer(scope, owner, key)
        # Bounded, only over the claim (xx): a claim dropped past the bound stays dropped.
        await self.redis.set(redis_key, value, ex=ANSWER_TTL_S, xx=self.max_answers is not None)

    async def release(self, scope: str, owner: str, key: str, *, keep_generation: bool = False) -> None:
        """Give a claim back (its request failed): a retry runs again, at once. A key that holds
        an answer (a retry's, once this run's claim had run out) keeps it.

        ``keep_generation``: the request may have made something before it failed, so its key
        stays in the caller's index (only the claim is deleted) and the retry derives the same
        ids (:class:`Claimed`), finding what this run made. Without it the key is given back
        whole: a retry is a new request, with new ids."""
        redis_key = self.keys.idempotent_answer(scope, owner, key)
        # One step (one slot: the owner's hash tag): a claim given back whole no longer counts.
        # Only a claim: an answer stored meanwhile by a retry that took over a claim run out
        # stays (core/claim_release.lua).
        whole = self.max_answers is not None and not keep_generation
        await self._release(keys=[redis_key, self.keys.idempotent_index(scope, owner)], args=[int(whole)])


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def again_on_lost_reply(step: Callable[[], Awaitable[T]], *, redis: Redis | None = None, attempts: int = 5) -> T:
    """Run ``step`` (which must be idempotent) again when its reply was lost.

    A connection cut while a command is in flight (``CLIENT KILL``, a failover, a reset) leaves
    its outcome unknown: it may have been applied. Answering "failed" then would make a client's
    retry apply it twice; running the idempotent step again settles it either way. A cut that
    killed one connection killed the idle ones of ``redis``'s pool too: they are dropped before
    the next attempt, which would otherwise draw them one by one.
    """
    for attempt in range(1, attempts + 1):
        try:
            return await step()
        except (RedisConnectionError, RedisTimeoutError):
            if attempt == attempts:
                raise
            pool = getattr(redis, "connection_pool", None)
            if pool is not None:
                await pool.disconnect(inuse_connections=False)
            await asyncio.sleep(LOST_REPLY_BACKOFF_S * attempt)
    raise AssertionError("unreachable")
