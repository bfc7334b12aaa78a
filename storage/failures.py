"""What a Redis call raises when Redis is away (down, restarting, failing over), as one tuple.

A cluster client raises an error of its own, no ``RedisError``, when no node answers at all (its
slot map cannot be read: every node restarting at once, a partition): a loop that caught only
``RedisError`` and ``OSError`` ended on it for good, while the process ran on without it (the
revocation watch, the deletion follow-ups: a cluster gone for a few seconds stopped both).
"""

from __future__ import annotations

from redis.exceptions import RedisClusterException, RedisError

REDIS_AWAY: tuple[type[Exception], ...] = (RedisError, RedisClusterException, OSError)
