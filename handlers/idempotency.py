"""``Idempotency-Key`` on HTTP creates and uploads: a retried request gets the first answer.

A client that sends the header with an unguessable key (a UUID) may repeat the request as often
as it likes: the first run's 2xx answer is stored (storage/idempotency.py) and every repeat with
the same key, by the same caller, within a day is answered with it (header
``Idempotent-Replayed: true``) without running again. A repeat while the first still runs is
``409 conflict``; a first run that failed leaves nothing behind, so its retry runs for real.
A caller keeps its :data:`~storage.idempotency.MAX_ANSWERS_PER_CALLER` most recent keys per
route; an older one is a new request again.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from handlers.context import Services
from handlers.http_common import RouteHandler, bearer_claims, client_address
from handlers.openapi_registry import IDEMPOTENCY_KEY, REPLAYED
from protocol.errors import CodedError, ErrorCode
from storage.idempotency import MAX_ANSWERS_PER_CALLER, IdempotentAnswers, InProgress, StoredAnswer

HEADER = IDEMPOTENCY_KEY.name
REPLAYED_HEADER = REPLAYED
_KEY = re.compile(IDEMPOTENCY_KEY.pattern)

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
            stored = await answers.claim(scope, owner, key)
        except InProgress:
            raise CodedError(ErrorCode.CONFLICT, f"a request with this {HEADER} is still running") from None
        if stored is not None:
            return replay(stored)
        async with answers.running(scope, owner, key):
            return await _first(
                request,
                handler,
                lambda a: answers.store(scope, owner, key, a),
                lambda: answers.release(scope, owner, key),
            )

    return wrapper


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
    if 200 <= response.status < 300 and isinstance(body, bytes):
        await store(StoredAnswer(response.status, response.content_type, body.decode("utf-8", "replace")))
    else:
        with contextlib.suppress(Exception):
            await release()
    return response
