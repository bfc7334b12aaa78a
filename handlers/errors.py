"""The one place where an exception becomes an ack or an HTTP error response."""

from __future__ import annotations

import errno
import logging
import math
from typing import Any

from aiohttp import web
from redis.exceptions import AskError, ClusterError, RedisClusterException, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handlers.disk_room import DISK_FULL
from handlers.log_throttle import LogThrottle
from handlers.metrics import Metrics
from protocol.errors import CodedError, ErrorCode
from storage.failures import disk_refusal

log = logging.getLogger(__name__)


# An outage fails every request the same way: one traceback per cause, then a count.
_throttle = LogThrottle(log)
# What Redis answers while a cluster moves (a slot migrating, a master failing over) when the
# client's own retries ran out: the request may simply be repeated (issue 24).
_MOVING = (AskError, TryAgainError, ClusterError, RedisClusterException)


# The ``reason`` of an ``unavailable`` answered because Redis is out of memory.
REDIS_FULL = "redis_full"
REDIS_FULL_MESSAGE = "the store is full (Redis maxmemory reached); writes are refused until memory is freed"


# The ``reason`` of an ``unavailable`` answered because Redis cannot write to its disk (it answers
# MISCONF: its append-only file or snapshot failed, often a full disk). Room is made by an
# operator, not at once: the wait is the other storage refusals'.
REDIS_DISK = "redis_disk_error"
REDIS_DISK_MESSAGE = "the store cannot write to its disk; nothing was stored, try again later"
REDIS_DISK_RETRY_AFTER_S = 60


# The ``reason`` of an ``unavailable`` answered because the server's disk (blob folder) is full.
STORAGE_FULL = "storage_full"
STORAGE_FULL_MESSAGE = "the server's storage is full; nothing was stored, try again later"
# A write refused for want of room (the disk, a quota, a file-size limit): the operator's to
# fix, not a bug, and the client's request may be repeated once there is room.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


# How long a client waits before retrying a request Redis did not answer or a moving slot refused.
AWAY_RETRY_S = 1


def _torn_connection(exc: BaseException) -> bool:
    """An AttributeError raised inside redis-py itself: a connection torn down under a command
    that was using it. A cluster client re-reading its slot map after a failover disconnects
    the old nodes' connections while commands are still connecting on them (a fresh-clone run:
    ``self._writer.writelines`` on None, in ``on_connect``). Redis never got the command; the
    request may be repeated, as for any connection that failed."""
    if not isinstance(exc, AttributeError):
        return False
    innermost = exc.__traceback__
    while innermost is not None and innermost.tb_next is not None:
        innermost = innermost.tb_next
    return innermost is not None and str(innermost.tb_frame.f_globals.get("__name__", "")).startswith("redis.")


def classify(exc: BaseException) -> CodedError:
    """The coded error for ``exc``; Redis not answering is ``unavailable``; anything else
    unexpected is logged (once per cause) and hidden as ``internal_error``."""
    if isinstance(exc, CodedError):
        return exc
    if isinstance(exc, OutOfMemoryError):
        # Not a bug of ours: Redis reached maxmemory and refuses writes (noeviction). Reads
        # still work; a client should retry later, and an operator must free memory.
        _throttle.exception("Redis is full (maxmemory reached)", exc)
        return CodedError(ErrorCode.UNAVAILABLE, REDIS_FULL_MESSAGE, reason=REDIS_FULL)
    refusal = disk_refusal(exc)
    if refusal is not None:
        # Not a bug of ours either: every write meets it alike, so one warning for them all.
        _throttle.exception(f"Redis cannot write to its disk ({refusal})", exc, expected=True, cause=REDIS_DISK)
        return CodedError(
            ErrorCode.UNAVAILABLE, REDIS_DISK_MESSAGE, reason=REDIS_DISK, retry_after_s=REDIS_DISK_RETRY_AFTER_S
        )
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        _throttle.exception("the server's storage is full", exc)
        return CodedError(ErrorCode.UNAVAILABLE, STORAGE_FULL_MESSAGE, reason=STORAGE_FULL)
    # With a second to wait (the Retry-After header of HTTP): a client retrying at once hit the
    # same moving slot or failover, and a 503 without it said nothing of when (audit "clusterlive").
    if isinstance(exc, RedisConnectionError | RedisTimeoutError) or _torn_connection(exc):
        _throttle.exception("Redis does not answer", exc, expected=True)
        return CodedError(ErrorCode.UNAVAILABLE, "a dependency does not answer; try again", retry_after_s=AWAY_RETRY_S)
    if isinstance(exc, _MOVING):
        _throttle.exception("the Redis cluster is moving", exc, expected=True)
        message = "the data is moving between Redis nodes; try again"
        return CodedError(ErrorCode.UNAVAILABLE, message, retry_after_s=AWAY_RETRY_S)
    _throttle.exception("internal error", exc)
    return CodedError(ErrorCode.INTERNAL_ERROR, "internal error")


# The words of a refusal raised without its own (a Lua script's bare ``{false, code}``): PROTOCOL.md
# promises a human ``message``, and the code repeated is none (a page showing it read "conflict").
PLAIN_WORDS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_PAYLOAD: "the payload is not valid",
    ErrorCode.INVALID_SESSION_ID: "the session id is missing or not a UUID v4",
    ErrorCode.UNKNOWN_EVENT: "no such event",
    ErrorCode.UNAUTHORIZED: "no valid token, or it expired",
    ErrorCode.FORBIDDEN: "this token may not do that to this session",
    ErrorCode.QUOTA_EXCEEDED: "your storage quota is used up",
    ErrorCode.SESSION_NOT_FOUND: "no such session",
    ErrorCode.NOT_FOUND: "the session holds nothing by that id",
    ErrorCode.METHOD_NOT_ALLOWED: "the route does not take that method",
    ErrorCode.INVALID_STATE: "not allowed in the session's current state",
    ErrorCode.CONFLICT: "it collides with what is already stored",
    ErrorCode.LIMIT_REACHED: "the session holds as many of these as it may",
    ErrorCode.SESSION_FULL: "the session has as many participants as it may",
    ErrorCode.PRECONDITION_FAILED: "the session changed since the version this was based on",
    ErrorCode.PAYLOAD_TOO_LARGE: "the message is too large",
    ErrorCode.RATE_LIMITED: "too many requests; wait a moment",
    ErrorCode.INTERNAL_ERROR: "internal error",
    ErrorCode.UNAVAILABLE: "a dependency does not answer; try again",
}


def error_body(error: CodedError) -> dict[str, Any]:
    """``{"error": code, "message": ..., **details}``: the shared part of acks and HTTP errors."""
    message = PLAIN_WORDS[error.code] if error.message == error.code.value else error.message
    return {**error.details, "error": error.code.value, "message": message}


def _count(metrics: Metrics | None, source: str, exc: BaseException) -> None:
    """Count a Redis failure, and a write the disk refused for want of room, on ``metrics``."""
    if metrics is None:
        return
    metrics.redis_error(source, exc)
    if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
        metrics.disk_refusals.labels(DISK_FULL).inc()


def to_ack(exc: BaseException, *, metrics: Metrics | None = None) -> dict[str, Any]:
    """The error ack for ``exc`` (a Redis failure is counted on ``metrics``)."""
    _count(metrics, "socket", exc)
    return {"ok": False, **error_body(classify(exc))}


def retry_after(error: CodedError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) for a refusal that says how long to wait in
    ``retry_after_s``: HTTP clients and proxies read the header, not our body's field."""
    wait_s = error.details.get("retry_after_s")
    if isinstance(wait_s, int | float) and not isinstance(wait_s, bool) and wait_s > 0:
        return {"Retry-After": str(max(1, math.ceil(wait_s)))}
    return {}


def to_http(exc: BaseException, *, metrics: Metrics | None = None) -> web.Response:
    """The JSON error response for ``exc``, with the status its code carries (a Redis failure
    is counted on ``metrics``)."""
    _count(metrics, "http", exc)
    error = classify(exc)
    return web.json_response(error_body(error), status=error.code.http_status, headers=retry_after(error))
