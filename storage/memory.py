"""Redis's memory as a whole: on a cluster, every primary's, since a write lands on any slot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """Bytes used and the budget they are held to (0: none) on the fullest node."""

    used_bytes: int
    budget_bytes: int

    @property
    def share(self) -> float:
        """Used over budget (0.0 without a budget)."""
        return self.used_bytes / self.budget_bytes if self.budget_bytes else 0.0


async def memory_figures(redis: Redis, budget_bytes: int = 0) -> MemoryFigures:
    """``INFO memory`` of the one Redis, or of every primary of a cluster (a cluster client
    asks one node for INFO by default, so a full shard went unseen beside an empty one).

    ``budget_bytes`` is a configured budget per node; 0 takes each node's own ``maxmemory``.
    The answer is the node whose share of its budget is the largest.
    """
    if isinstance(redis, RedisCluster):
        info = await redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
    else:
        info = await redis.info("memory")
    return _fullest(info, budget_bytes)


def _fullest(info: dict[str, Any], budget_bytes: int) -> MemoryFigures:
    if "used_memory" in info:  # one node's answer
        return MemoryFigures(int(info["used_memory"]), budget_bytes or int(info.get("maxmemory") or 0))
    nodes = [_fullest(part, budget_bytes) for part in info.values() if isinstance(part, dict)]
    return max(nodes, key=lambda figures: figures.share, default=MemoryFigures(0, 0))
