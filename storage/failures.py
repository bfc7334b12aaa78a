"""What a Redis call raises when Redis is away (down, restarting, failing over), as one tuple.

A cluster client raises an error of its own, no ``RedisError``, when no node answers at all (its
slot map cannot be read: every node restarting at once, a partition): a loop that caught only
``RedisError`` and ``OSError`` ended on it for good, while the process ran on without it (the
revocation watch, the deletion follow-ups: a cluster gone for a few seconds stopped both).
"""

from __future__ import annotations

from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

REDIS_AWAY: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)

# What a command meets while the shard its key hashes to has no master (killed or frozen, until
# its replica takes over) or is out of reach; not another refusal (a full Redis, a wrong type).
SHARD_AWAY: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
    OSError,
)


# What Redis answers every write (and PING) with while it cannot persist: its append-only file
# refused a write (a full disk, a quota, an I/O error) or, with ``stop-writes-on-bgsave-error``, its
# last snapshot failed. Reads go on; writes come back by themselves once Redis writes again.
MISCONF = "MISCONF"


def disk_refusal(exc: BaseException) -> str | None:
    """Redis's own words when ``exc`` is its refusal to write for want of a disk (``MISCONF``),
    else None. A pipeline's error names the command before Redis's reply, a script's adds where
    it was called: the reply is found inside either."""
    if not isinstance(exc, ResponseError):
        return None
    text = str(exc)
    start = text.find(MISCONF + " ")
    if start < 0:
        return None
    words = text[start + len(MISCONF) + 1 :]
    return words.split("',)", 1)[0].split(" script: ", 1)[0].strip().rstrip(".")
