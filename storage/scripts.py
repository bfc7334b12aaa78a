"""Loads the Lua scripts: a capability's under ``storage/<capability>/lua/``, the shared ones
(``core``, ``jobs``) under ``storage/lua/<group>/``. A script is named ``<capability or
group>/<file>.lua`` either way.

A script that changes a session is prefixed with the shared event prologue
(``core/_event.lua``: the log append and the owner access rule). Each repository registers the
scripts it runs; registering costs no round trip (EVALSHA with a transparent NOSCRIPT reload).

On Redis Cluster the scripts publish with ``SPUBLISH`` (sharded pub/sub: the session's channel
shares its hash tag, so it lives on the shard that runs the script) instead of ``PUBLISH``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from storage.lean_redis import LeanRedis

_PROLOGUE = "core/_event.lua"


def source(path: str) -> str:
    """The text of script ``<capability or group>/<file>.lua``."""
    package, _, name = path.partition("/")
    own = resources.files("storage").joinpath(package, "lua", name)
    shared = resources.files("storage").joinpath("lua", path)
    return (own if own.is_file() else shared).read_text(encoding="utf-8")


def _for(redis: Redis, source: str) -> str:
    if isinstance(redis, RedisCluster):
        return source.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
    return source


def composed_script(redis: Redis, *paths: str) -> AsyncScript:
    """One script made of the given sources, in order (prologues first).

    The one place a script reaches Redis: every repository registers its scripts through this
    module, so each gets the cluster rewrite (a test keeps ``register_script`` out of the rest).
    """
    script = redis.register_script(_for(redis, "\n".join(source(path) for path in paths)))
    if isinstance(redis, LeanRedis):
        redis.remember(script)  # a NOSCRIPT on its link is answered with EVAL, in order
    return script


def event_script(redis: Redis, path: str) -> AsyncScript:
    """A session-changing script (``lua/<path>``) with the event prologue in front of it."""
    return composed_script(redis, _PROLOGUE, path)


def plain_script(redis: Redis, path: str) -> AsyncScript:
    """A script that appends no event."""
    return composed_script(redis, path)


@dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts every kind shares: create a record, update it, append a notice."""

    append: AsyncScript
    session_create: AsyncScript
    session_update: AsyncScript

    @classmethod
    def load(cls, redis: Redis) -> Scripts:
        """Register the shared scripts on ``redis``."""
        return cls(
            append=event_script(redis, "core/append.lua"),
            session_create=event_script(redis, "core/session_create.lua"),
            session_update=event_script(redis, "core/session_update.lua"),
        )
