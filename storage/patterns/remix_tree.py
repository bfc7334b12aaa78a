"""A session's remix tree for the admin detail view: lineage upward, descendants downward.

Upward follows each record's ``remixed_from``; downward reads each session's children index
(``keys.remix_children``, written by the step that counts a remix, see
``lua/patterns/remix_count.lua``). Both are bounded so a popular or deep tree never makes one
request read without end: the descendants stop at a depth and a width, and say how many they
left out (``more``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from storage.keys import Keys

ANCESTOR_LIMIT = 50


@dataclass(frozen=True, slots=True)
class TreeBounds:
    """How much of the descendants one request reads."""

    depth: int = 4  # levels below the session
    width: int = 20  # children shown per session (the oldest first)
    nodes: int = 200  # sessions in all


class RemixTree:
    """Reads remix lineage and descendants (no writes: the pattern steps keep the indexes)."""

    def __init__(self, *, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def ancestors(self, session_id: str) -> list[dict[str, str]]:  # exists: "yes" | "no"
        """The remix lineage above ``session_id``, parent first (``remixed_from`` links)."""
        chain: list[dict[str, str]] = []
        seen = {session_id}
        current = session_id
        for _ in range(ANCESTOR_LIMIT):
            found: Any = await self._redis.hget(self._keys.session(current), "remixed_from")
            parent = str(found or "")
            if not parent or parent in seen:
                break
            seen.add(parent)
            name, kind = await self._redis.hmget(self._keys.session(parent), "name", "kind")
            chain.append({"session_id": parent, "name": str(name or ""), "exists": "yes" if kind else "no"})
            current = parent
        return chain

    async def descendants(self, session_id: str, bounds: TreeBounds = TreeBounds()) -> dict[str, Any]:
        """``{children: [node], more}`` below ``session_id``; a node is ``{session_id, name,
        remix_count, immutable, children, more}``, ``more`` counting the children not shown."""
        root: dict[str, Any] = {"session_id": session_id, "children": [], "more": 0}
        level = [root]
        seen = {session_id}
        budget = bounds.nodes
        for depth in range(bounds.depth + 1):
            found = await self._children([node["session_id"] for node in level], width=bounds.width)
            following: list[dict[str, Any]] = []
            for node, (child_ids, total) in zip(level, found, strict=True):
                node["more"] = total
                if depth == bounds.depth:
                    continue  # the last level only counts what lies below it
                fresh = [c for c in child_ids if c not in seen][: max(budget, 0)]
                seen.update(fresh)
                budget -= len(fresh)
                node["children"] = [{"session_id": c, "children": [], "more": 0} for c in fresh]
                following += node["children"]
            alive = await self._describe(following)
            gone = {node["session_id"] for node, ok in zip(following, alive, strict=True) if not ok}
            if gone:  # index entries a crash left behind: neither shown nor counted
                for node in level:
                    kept = [c for c in node["children"] if c["session_id"] not in gone]
                    node["more"] -= len(node["children"]) - len(kept)
                    node["children"] = kept
            level = [node for node, ok in zip(following, alive, strict=True) if ok]
            if not level:
                break
        self._settle_counts(root)
        return {"children": root["children"], "more": root["more"]}

    async def _children(self, session_ids: list[str], *, width: int) -> list[tuple[list[str], int]]:
        """For each session, its first ``width`` children (oldest first) and how many it has."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.zrange(self._keys.remix_children(session_id), 0, width - 1)
                pipe.zcard(self._keys.remix_children(session_id))
            found = await pipe.execute()
        return [([str(c) for c in found[i]], int(found[i + 1])) for i in range(0, len(found), 2)]

    async def _describe(self, nodes: list[dict[str, Any]]) -> list[bool]:
        """Fill each node's name and counts; False where the session is gone."""
        if not nodes:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for node in nodes:
                pipe.hmget(self._keys.session(node["session_id"]), "kind", "name", "remix_count", "immutable")
            found = await pipe.execute()
        alive = []
        for node, (kind, name, remix_count, immutable) in zip(nodes, found, strict=True):
            node.update(name=str(name or ""), remix_count=int(remix_count or 0), immutable=immutable == "1")
            alive.append(bool(kind))
        return alive

    @staticmethod
    def _settle_counts(node: dict[str, Any]) -> None:
        """Turn each node's child total into ``more``: the children it has but does not show."""
        for child in node["children"]:
            RemixTree._settle_counts(child)
        node["more"] = max(node["more"] - len(node["children"]), 0)
