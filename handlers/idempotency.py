"""``Idempotency-Key`` on HTTP creates and uploads: a retried request gets the first answer.

A client that sends the header with an unguessable key (a UUID) may repeat the request as often
as it likes: the first run's 2xx answer is stored (storage/idempotency.py) and every repeat with
the same key, by the same caller, within a day is answered with it (header
``Idempotent-Replayed: true``) without running again. A repeat while the first still runs is
``409 conflict``; a first run that failed gives its claim back, so its retry runs at once.
A caller keeps its :data:`~storage.idempotency.MAX_ANSWERS_PER_CALLER` most recent keys per
route; an older one is a new request again.

A keyed request's handler names the objects it creates by :func:`derived_id` (ids derived from
the key's claim, see storage/idempotency.py) and, finding one there already, answers it: a node
killed after the create and before the answer was stored leaves the object, and the retry answers
that object instead of creating a second one. A run that failed *normally* once it had named its
objects (an exception, a Redis error, a 5xx, its task cancelled, its answer not stored) may have
made them too: it gives its claim back keeping the key's generation, so the retry derives the
same ids and answers what it made. Only a 4xx refusal, or a failure before any id was named,
gives the key back whole (nothing was made: the retry is a new request).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import ValidationError

from handlers.context import Services
from handlers.http_common import RouteHandler, bearer_claims, client_address
from handlers.log_throttle import LogThrottle
from handlers.openapi_registry import IDEMPOTENCY_KEY, REPLAYED
from protocol.errors import CodedError, ErrorCode
from storage.idempotency import (
    CLAIM_TTL_S,
    MAX_ANSWERS_PER_CALLER,
    Claimed,
    IdempotentAnswers,
    InProgress,
    StoredAnswer,
    again_on_lost_reply,
)
from storage.idempotency import derived_id as _derived
from storage.ratelimit import DAY_S, Counted, Refused

log = logging.getLogger(__name__)
_unreleased = LogThrottle(log)

# New keys (answers kept a day) the guests of one client address claim per UTC day, together:
# SESSIONHUB_IDEMPOTENCY_KEYS_PER_DAY_PER_ADDRESS.
KEYS_DAY_BUCKET = "idempotency_day"

HEADER = IDEMPOTENCY_KEY.name
REPLAYED_HEADER = REPLAYED
_KEY = re.compile(IDEMPOTENCY_KEY.pattern)

# The running keyed request's run (the ids of the objects it creates): a context variable, set
# by the wrapper around its handler's run (aiohttp's request storage warns on plain string keys,
# and its typed keys are newer than the lowest aiohttp supported).
_IDS: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("idempotent_ids", default=None)
# The purpose of derived_key that derives them (a secret of the server's own, the same on every node).
_SECRET_PURPOSE = "idempotent-ids"

# Who a key belongs to: keys of different callers never meet. None: the request will be refused
# anyway (a bad token), so it runs without a key.
OwnerOf = Callable[[web.Request], str | None]


def token_owner(services: Services) -> OwnerOf:
    """The caller named by the bearer token (``u:<sub>``)."""

    def owner(request: web.Request) -> str | None:
        try:
            return "u:" + bearer_claims(request, services.tokens, services.clock).sub
        except CodedError:
            return None

    return owner


def address_owner(services: Services) -> OwnerOf:
    """The caller's address (``a:<address>``), for routes that take no token."""

    def owner(request: web.Request) -> str | None:
        return "a:" + client_address(request, trust_forwarded_for=services.trust_forwarded_for)

    return owner


def idempotent(
    handler: RouteHandler, services: Services, scope: str, *, owner_of: OwnerOf | None = None
) -> RouteHandler:
    """``handler`` answering a repeated ``Idempotency-Key`` with its first 2xx answer; keys
    belong to ``owner_of`` (the bearer token's user by default)."""
    owner_of = owner_of or token_owner(services)
    answers = IdempotentAnswers(services.redis, services.keys, max_answers=MAX_ANSWERS_PER_CALLER)
    # A server that signs nothing has no secret: the ids are then as unguessable as the key,
    # which only its caller knows (a fresh UUID, as the protocol asks).
    secret = services.tokens.derived_key(_SECRET_PURPOSE) or b""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        keys = request.headers.getall(HEADER, ())
        if not keys:
            return await handler(request)
        if len(keys) > 1:  # which one the client meant is anyone's guess: a retry could pick the other
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{HEADER}: one header, not {len(keys)}")
        key = keys[0]
        if not _KEY.fullmatch(key):
            raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{HEADER}: 8-128 characters of A-Z a-z 0-9 _ - : .")
        owner = owner_of(request)
        if owner is None:
            return await handler(request)
        try:
            begun = await answers.begin(scope, owner, key)
        except InProgress:
            raise CodedError(ErrorCode.CONFLICT, f"a request with this {HEADER} is still running") from None
        if not isinstance(begun, Claimed):
            return replay(begun)
        run = _Run(answers, scope, owner, key, begun, secret)
        named = _IDS.set(run)
        try:
            return await _claimed(request, run)
        finally:
            _IDS.reset(named)

    async def _claimed(request: web.Request, run: _Run) -> web.StreamResponse:
        counted = None
        if not run.claimed.again:  # a retry's key was counted by the run that kept it
            try:
                counted = await guests_day(services, request, run.owner)
            except BaseException:
                await run.give_back(refused=True)
                raise
        stays = False  # the key stays in the caller's index (its answer or its generation): it counts
        try:
            async with answers.running(run.scope, run.owner, run.key):
                try:
                    response = await handler(request)
                except BaseException as exc:  # a cancellation too: the retry must not wait out the claim
                    stays = await run.give_back(refused=_refused(exc))
                    raise
                stays = await run.settle(response)
            return response
        finally:
            if counted is not None and not (stays or run.kept):
                await services.limiter.give_back(counted)

    return wrapper


async def guests_day(services: Services, request: web.Request, owner: str) -> Counted | None:
    """Count a guest's new key for its client address in the UTC day (None: not a guest's).

    Each caller keeps its :data:`MAX_ANSWERS_PER_CALLER` newest keys per route (~1 KB of Redis
    each, a day), but guest tokens are free to mint: measured, one guest stored 1,000 answers of
    ``/session`` commands in about a second, and the guests of one address (1000 a day) could
    keep a million answers a route, about a gigabyte. Past the address's day, a new key is
    ``rate_limited`` to the day's end, nothing run or stored (a repeat of a kept key is still
    answered; a request without the key runs as ever)."""
    if not owner.startswith("u:"):
        return None  # keyed by address (the pattern API): that bound is per address already
    try:
        claims = bearer_claims(request, services.tokens, services.clock)
    except CodedError:
        return None
    if not claims.guest:
        return None
    limit = services.limits.idempotency_keys_per_day_per_address
    address = client_address(request, trust_forwarded_for=services.trust_forwarded_for)
    taken = await services.limiter.take(KEYS_DAY_BUCKET, address, limit=limit, window_s=DAY_S)
    if isinstance(taken, Refused):
        raise CodedError(
            ErrorCode.RATE_LIMITED,
            f"at most {limit} new {HEADER}s a day from this address; try again tomorrow",
            retry_after_s=taken.retry_after_s,
        )
    return taken


def derived_id(request: web.Request, purpose: str) -> str | None:
    """The id of the object ``purpose`` names that this keyed request creates: the same in every
    run of the request (a retry after its node died or its first run failed), so its create finds
    the object made before instead of making a second one; None without an ``Idempotency-Key``
    (a fresh id then)."""
    run = _IDS.get()
    return run.derive(purpose) if run is not None else None


@dataclass
class _Run:
    """One claimed run of a keyed request: the ids it names its objects by, and what becomes of
    its key when it ends (its answer kept, or its claim given back)."""

    answers: IdempotentAnswers
    scope: str
    owner: str
    key: str
    claimed: Claimed
    secret: bytes
    # A derived id was handed out: from then on the handler may have made its object.
    named: bool = False
    # The key stays in the caller's index whatever happens next (its answer being kept).
    kept: bool = False

    def derive(self, purpose: str) -> str | None:
        generation = self.claimed.generation
        if generation is None:
            return None
        self.named = True
        return _derived(self.secret, self.scope, self.owner, self.key, generation, purpose)

    async def settle(self, response: web.StreamResponse) -> bool:
        """Keep ``response`` as the key's answer (a 2xx with a body in memory), else give the
        claim back; whether the key stays in the caller's index."""
        body = response.body if isinstance(response, web.Response) else None
        if not (200 <= response.status < 300 and isinstance(body, bytes)):
            return await self.give_back(refused=400 <= response.status < 500)
        answer = StoredAnswer(response.status, response.content_type, body.decode("utf-8", "replace"))
        self.kept = True
        try:  # SET of the same value: run again when its reply was lost
            await again_on_lost_reply(
                lambda: self.answers.store(self.scope, self.owner, self.key, answer), redis=self.answers.redis
            )
        except asyncio.CancelledError:
            # Its node stopping while the answer is kept: the claim is given back, the generation
            # kept, so a retry (on another node) runs at once and answers the object this run
            # made, not a 409 until the claim runs out.
            await self._release(keep_generation=True)
            raise
        except Exception as exc:
            # What the handler made stands and the client is told so. The claim is given back,
            # the generation kept: a retry runs again at once and answers that very object
            # (not a 409 while the claim runs out, nor, the key given back whole, a second one).
            log.warning("an Idempotency-Key answer was not kept (a retry finds its object): %r", exc)
            await self._release(keep_generation=True)
        return True

    async def give_back(self, *, refused: bool) -> bool:
        """Give the claim back after a failure; whether the key stays in the caller's index.

        It stays (its generation kept, so a retry derives the same ids and finds what this run
        made) unless nothing can have been made: a refusal (4xx, which by the house rule changes
        nothing) or a failure before any id was handed out. A key kept by a run before (a retry)
        stays whatever this run did."""
        keep = self.claimed.again or (self.named and not refused)
        await self._release(keep_generation=keep)
        return keep

    async def _release(self, *, keep_generation: bool) -> None:
        # Redis gone: the claim runs out on its own (CLAIM_TTL_S), its index entry left as it is.
        # Said (once per cause, then counted): until then a resend is answered 409 "still running".
        try:
            await self.answers.release(self.scope, self.owner, self.key, keep_generation=keep_generation)
        except Exception as exc:
            _unreleased.exception(
                f"an Idempotency-Key was not given back; resends of it wait up to {CLAIM_TTL_S} s", exc, expected=True
            )


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` answers 4xx: bad input, a limit, a missing parent, refused before anything
    was written. A 5xx, a Redis error or a cancellation may come after the create."""
    if isinstance(exc, ValidationError):
        return True
    status = exc.code.http_status if isinstance(exc, CodedError) else getattr(exc, "status", None)
    return isinstance(status, int) and 400 <= status < 500  # the pattern API's ApiError, aiohttp's


def replay(stored: StoredAnswer) -> web.Response:
    """The stored answer, marked as a replay."""
    response = web.Response(status=stored.status, text=stored.body, headers={REPLAYED_HEADER: "true"})
    response.content_type = stored.content_type
    return response
