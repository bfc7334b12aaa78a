"""``Idempotency-Key`` on HTTP creates and uploads: a retried request gets the first answer.

A client that sends the header with an unguessable key (a UUID) may repeat the request as often
as it likes: the first run's 2xx answer is stored (storage/idempotency.py) and every repeat with
the same key, by the same caller, within a day is answered with it (header
``Idempotent-Replayed: true``) without running again. A repeat while the first still runs is
``409 conflict``; a first run that failed leaves nothing behind, so its retry runs for real.
A caller keeps its :data:`~storage.idempotency.MAX_ANSWERS_PER_CALLER` most recent keys per
route; an older one is a new request again.

A keyed request's handler names the objects it creates by :func:`derived_id` (ids derived from
the key's claim, see storage/idempotency.py) and, finding one there already, answers it: a node
killed after the create and before the answer was stored leaves the object, and the retry answers
that object instead of creating a second one.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.context import Services
from handlers.http_common import RouteHandler, bearer_claims, client_address
from handlers.openapi_registry import IDEMPOTENCY_KEY, REPLAYED
from protocol.errors import CodedError, ErrorCode
from storage.idempotency import (
    MAX_ANSWERS_PER_CALLER,
    Claimed,
    IdempotentAnswers,
    InProgress,
    StoredAnswer,
)
from storage.idempotency import derived_id as _derived
from storage.ratelimit import DAY_S, Counted, Refused

# New keys (answers kept a day) the guests of one client address claim per UTC day, together:
# SESSIONHUB_IDEMPOTENCY_KEYS_PER_DAY_PER_ADDRESS.
KEYS_DAY_BUCKET = "idempotency_day"

HEADER = IDEMPOTENCY_KEY.name
REPLAYED_HEADER = REPLAYED
_KEY = re.compile(IDEMPOTENCY_KEY.pattern)

# The running keyed request's ids of the objects it creates (a purpose -> id function): a
# context variable, set by the wrapper around its handler's run (aiohttp's request storage warns
# on plain string keys, and its typed keys are newer than the lowest aiohttp supported).
_IDS: contextvars.ContextVar[Callable[[str], str] | None] = contextvars.ContextVar("idempotent_ids", default=None)
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
        key = request.headers.get(HEADER)
        if key is None:
            return await handler(request)
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
        generation = begun.generation
        ids = None if generation is None else lambda purpose: _derived(secret, scope, owner, key, generation, purpose)
        named = _IDS.set(ids)
        try:
            return await _claimed(request, scope, owner, key)
        finally:
            _IDS.reset(named)

    async def _claimed(request: web.Request, scope: str, owner: str, key: str) -> web.StreamResponse:
        try:
            counted = await guests_day(services, request, owner)
        except BaseException:
            with contextlib.suppress(Exception):  # the claim expires on its own if Redis is gone
                await answers.release(scope, owner, key)
            raise
        try:
            async with answers.running(scope, owner, key):
                response = await _first(
                    request,
                    handler,
                    lambda a: answers.store(scope, owner, key, a),
                    lambda: answers.release(scope, owner, key),
                )
        except BaseException:
            if counted is not None:
                await services.limiter.give_back(counted)
            raise
        if counted is not None and not _kept(response):
            await services.limiter.give_back(counted)
        return response

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
    run of the request (a retry after its node died), so its create finds the object made before
    instead of making a second one; None without an ``Idempotency-Key`` (a fresh id then)."""
    ids = _IDS.get()
    return ids(purpose) if ids is not None else None


def _kept(response: web.StreamResponse) -> bool:
    """Whether :func:`_first` stored ``response`` (a 2xx with a body in memory)."""
    return 200 <= response.status < 300 and isinstance(getattr(response, "body", None), bytes)


def replay(stored: StoredAnswer) -> web.Response:
    """The stored answer, marked as a replay."""
    response = web.Response(status=stored.status, text=stored.body, headers={REPLAYED_HEADER: "true"})
    response.content_type = stored.content_type
    return response


async def _first(
    request: web.Request,
    handler: RouteHandler,
    store: Callable[[StoredAnswer], Awaitable[None]],
    release: Callable[[], Awaitable[None]],
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Exception:
        with contextlib.suppress(Exception):  # the claim expires on its own if Redis is gone
            await release()
        raise
    body = response.body if isinstance(response, web.Response) else None
    if _kept(response) and isinstance(body, bytes):
        await store(StoredAnswer(response.status, response.content_type, body.decode("utf-8", "replace")))
    else:
        with contextlib.suppress(Exception):
            await release()
    return response
