"""What a process checks of its Redis at start, besides its version (storage.server_version).

- **Refused commands.** Every change is a Lua script (``SCRIPT LOAD``, ``EVALSHA``) and every node
  hears the others over pub/sub. A Redis user whose ACL leaves one out, or a Redis with the
  command renamed away (``rename-command``), accepted the connection and answered ``PING``; the
  server said ready, then answered every write ``500 internal_error`` with a traceback in its
  log (audit "redispressure"). A process refuses to start instead, naming the command.
- **Eviction.** A Redis with a ``maxmemory`` under any policy but ``noeviction`` deletes keys of
  its own accord when full: sessions, logs, devices, the records that make a retry safe. It
  works until then, so a start only warns (``/admin/alerts`` raises ``redis_eviction`` too).

Each probe is bounded; one that does not answer in time (a node failing over) is skipped, not the
start: only a refusal Redis actually said stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from storage.keys import Keys
from storage.memory import evicting_policies, memory_infos
from storage.scripts import plain_script

READ_BOUND_S = 5.0


async def refused_command(redis: Redis, keys: Keys, *, bound_s: float = READ_BOUND_S) -> str:
    """Why ``redis`` will not serve sessionhub's commands ("" when it will, or cannot be told):
    the first refused of the scripts' and pub/sub's (on a channel under the key prefix: a user
    whose ACL allows only the deployment's prefix is refused nothing sessionhub does)."""
    channel = keys.probe_channel()
    probes: list[tuple[str, Callable[[], Awaitable[object]]]] = [("SCRIPT LOAD / EVALSHA", lambda: _script(redis))]
    if not isinstance(redis, RedisCluster):  # a cluster's bus is sharded pub/sub on each shard's node
        probes += [("PUBLISH", lambda: redis.publish(channel, "")), ("SUBSCRIBE", lambda: _subscribe(redis, channel))]
    for name, probe in probes:
        try:
            await asyncio.wait_for(probe(), bound_s)
        except ResponseError as exc:  # NOPERM, "unknown command": Redis's own refusal
            return (
                f"Redis refuses {name}, which sessionhub needs (every change is a Lua script, every node"
                f" hears the others over pub/sub): {exc}. Allow it to REDIS_URL's user (ACL), or do not"
                " rename it away"
            )
        except (RedisError, RedisClusterException, OSError, TimeoutError):
            continue  # not an answer: the start goes on, as for the version's check
    return ""


async def _script(redis: Redis) -> None:
    # Both, whatever Redis holds already: it loads every script again after a restart.
    probe = plain_script(redis, "core/probe.lua")
    await probe.load()
    await probe(args=["probe"])


async def _subscribe(redis: Redis, channel: str) -> None:
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(channel)
        # The refusal comes as the answer to the SUBSCRIBE, read here.
        await pubsub.get_message(timeout=1.0)
        await pubsub.unsubscribe(channel)
    finally:
        await pubsub.aclose()


def info_refused_warning(said: str) -> str:
    """What an operator is told of a Redis that refuses ``INFO`` (a start's line, an alert)."""
    return (
        f"Redis refuses INFO ({said}): the storage guard admits every create, the memory alerts and"
        " redis_eviction cannot be raised, and the version is not checked; allow INFO to REDIS_URL's"
        " user (ACL +info)"
    )


async def memory_warning(redis: Redis, *, bound_s: float = READ_BOUND_S) -> str:
    """What a start says of Redis's memory settings, from one bounded ``INFO memory``: that it
    refuses ``INFO`` (sessionhub serves without it: a managed Redis may rename it, but what goes
    blind is said), or that a primary may evict keys; "" when neither (or INFO did not answer)."""
    try:
        nodes = await memory_infos(redis, bound_s)
    except ResponseError as exc:
        return info_refused_warning(str(exc))
    except (RedisError, RedisClusterException, OSError, TimeoutError):
        return ""
    policies = evicting_policies(nodes)
    return eviction_warning(policies, len(nodes)) if policies else ""


def eviction_warning(policies: list[str], nodes: int) -> str:
    """What an operator is told of a Redis that may evict sessionhub's keys (an alert, a log line)."""
    named = ", ".join(sorted(set(policies)))
    return (
        f"Redis may delete sessionhub's keys when full: maxmemory-policy {named} with a maxmemory"
        f" ({len(policies)} of {nodes} primaries). Sessions, logs, devices and the records that make"
        " retries safe would be lost without a word; set maxmemory-policy noeviction (a full Redis"
        " then refuses writes, and the storage guard refuses new sessions before that)"
    )
