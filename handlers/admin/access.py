"""The admin check every admin route and page call makes (a bearer token with ``admin``), and
the rate of admin actions that change data."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from auth.claims import Claims, Permission
from handlers.context import Services
from handlers.http_common import bearer_claims
from handlers.rate_limit import within
from protocol.errors import CodedError, ErrorCode
from storage.failures import REDIS_AWAY
from storage.ratelimit import Refused


async def admin_claims(request: web.Request, services: Services) -> Claims:
    """The caller's claims: ``unauthorized`` without a valid token, ``forbidden`` without ``admin``.

    A device's token (``fam``: minted by a refresh) carries ``admin`` as the user's profile had it
    then: it is checked against the profile now, so ``sessionhub admin revoke`` takes effect at
    once, not when the token runs out (an hour of delete and export rights: audit "operatorday").
    A token minted by ``sessionhub token`` has no device and no grant behind it: its word stands
    until it expires, as the operator who minted it chose.
    """
    claims = bearer_claims(request, services.tokens, services.clock)
    if Permission.ADMIN not in claims.perms:
        raise CodedError(ErrorCode.FORBIDDEN, "the admin permission is required")
    if claims.fam and not await services.identities.admin_granted(claims.sub):
        raise CodedError(ErrorCode.FORBIDDEN, "the admin permission was withdrawn", reason="withdrawn")
    return claims


ACTION_BUCKET = "admin_action"
ACTION_LIMITED = "too many admin actions; wait a minute"


async def take_admin_action(services: Services, claims: Claims, *, per_min: int) -> None:
    """Count one data-changing admin action of ``claims``; ``rate_limited`` past ``per_min``."""
    await within(services.limiter, ACTION_BUCKET, claims.sub, limit=per_min, window_s=60, message=ACTION_LIMITED)


class ActionCount:
    """One admin action counted by :func:`admin_action`; :meth:`changed_nothing` frees it."""

    def __init__(self) -> None:
        self.counted = True

    def changed_nothing(self) -> None:
        """The press changed nothing (refused by its own check, or done by an earlier press):
        its place in the minute's actions is given back."""
        self.counted = False


@asynccontextmanager
async def admin_action(services: Services, claims: Claims, *, per_min: int) -> AsyncIterator[ActionCount]:
    """Count one admin action of ``claims`` around a block that may turn out to change nothing:
    ``rate_limited`` past ``per_min`` (before the block runs), and the count given back when the
    block says so or fails. A discard-all refused for a changed count, or a retry pressed again,
    used up the operator's minute as a real action did (audit "adminhostile": thirty refused
    presses and the right one was refused ``429``)."""
    taken = await services.limiter.take(ACTION_BUCKET, claims.sub, limit=per_min, window_s=60)
    if isinstance(taken, Refused):
        raise CodedError(ErrorCode.RATE_LIMITED, ACTION_LIMITED, retry_after_s=taken.retry_after_s)
    count = ActionCount()
    try:
        yield count
    except BaseException:
        count.changed_nothing()
        raise
    finally:
        if not count.counted:
            # A give-back that Redis refuses costs the operator one action of this minute.
            with contextlib.suppress(*REDIS_AWAY):
                await services.limiter.give_back(taken)
