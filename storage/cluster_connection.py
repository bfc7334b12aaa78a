"""The connections of the node's Redis Cluster client: a write on a connection that another task
closed meanwhile fails as a lost connection, which the cluster client retries, not as a crash.

redis-py's async cluster client answers a ``CLUSTERDOWN`` reply (every master restarted at once
and not agreeing yet, a failover) by closing every connection of every node
(``RedisCluster.aclose``), the ones other tasks are in the middle of using included. A task that
had checked its connection and was about to write (under ``socket_timeout`` the write runs in a
task of its own, one loop turn later) then wrote to ``None``: ``AttributeError: 'NoneType' object
has no attribute 'writelines'`` on Python 3.11; on 3.12 and 3.13, a turn earlier, to a transport
being torn down: ``TypeError: 'NoneType' object is not callable`` from asyncio's own code. That
is no ``RedisError``: the cluster client does not retry it,
and every caller that expects Redis to be away now and then (``storage.failures.REDIS_AWAY``)
ended on it -- the node's heartbeat and revocation watch stopped for good after a cluster
restart, in about one comeback in three (``tests/test_cluster_comeback.py``).

Here such a write raises redis-py's ``ConnectionError``, as a connection lost under a read does:
the cluster client marks the node for a reconnect, reads the slot map anew and retries.

The one module that puts a connection class into redis-py's cluster client, which takes none as
an argument: through its ``connection_kwargs`` (what each node it discovers is built with) and
its startup nodes' ``connection_class`` (what a node opens its connections with), public
attributes of redis-py 8.0 and 8.1 (``pyproject.toml``'s range). :func:`install` checks that the
startup nodes took it; ``tests/test_cluster_comeback.py`` checks that every node and the bus's
shard links do.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

# Where asyncio's modules are: an error raised in one during a write is the transport's state.
ASYNCIO_DIR = os.path.dirname(asyncio.__file__)


def lost_under_write(connection: Connection, exc: AttributeError | TypeError) -> Exception:
    """The error for an ``AttributeError`` or ``TypeError`` out of a write: a lost connection when
    it came from a stream another task closed (an attribute looked up on ``None``, or any such
    error raised inside asyncio's transport), else the error itself (a bug stays one)."""
    closed = isinstance(exc, AttributeError) and exc.obj is None
    if not (closed or _raised_in_asyncio(exc)):
        return exc
    return RedisConnectionError(f"Connection to {connection.host}:{connection.port} was closed during a write")


def _raised_in_asyncio(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is asyncio's (a transport or stream)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return os.path.dirname(tb.tb_frame.f_code.co_filename) == ASYNCIO_DIR


class ClusterConnection(Connection):
    """redis-py's connection, whose write on a connection closed under it is a ``ConnectionError``."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except (AttributeError, TypeError) as exc:
            raise lost_under_write(self, exc) from exc


class ClusterSSLConnection(SSLConnection):
    """:class:`ClusterConnection` over TLS."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes], check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except (AttributeError, TypeError) as exc:
            raise lost_under_write(self, exc) from exc


def connection_class_for(base: type[Any]) -> type[Connection]:
    """The class to use instead of redis-py's ``base`` (TLS or not)."""
    return ClusterSSLConnection if issubclass(base, SSLConnection) else ClusterConnection


def install(client: RedisCluster) -> RedisCluster:
    """Make every connection ``client`` opens from now on one of this module's (call it before the
    client's first command). RuntimeError when this redis-py opens them some other way."""
    kwargs = client.nodes_manager.connection_kwargs
    chosen = connection_class_for(kwargs.get("connection_class", Connection))
    kwargs["connection_class"] = chosen
    nodes = [*client.nodes_manager.startup_nodes.values(), *client.startup_nodes]
    for node in nodes:
        node.connection_class = chosen
        # An unopened connection, taken and given back: the node's next command uses it.
        connection = node.acquire_connection()
        node.release(connection)
        if not isinstance(connection, chosen):
            raise RuntimeError(
                "this redis-py opens its cluster connections some other way: see storage/cluster_connection.py"
            )
    return client
