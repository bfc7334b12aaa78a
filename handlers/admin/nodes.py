"""Per-node heartbeats: each serve node says every few seconds whether its bus is live, and how
many clients and subscriptions it serves (from its ``Metrics``).

The dashboard lists the nodes and raises an alert for a node whose bus is down or whose
heartbeat stopped (a node that died leaves its last heartbeat behind, which then goes stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import secrets
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from auth.key_fingerprint import fingerprint
from handlers.background import STOP_WAIT_S, cancelled, rest, stop_if_cancelled

from handlers.context import Services
from handlers.log_throttle import LogThrottle
from storage.failures import REDIS_AWAY, disk_refusal

log = logging.getLogger(__name__)
# An unexpected failure of a round is logged once with its traceback, then counted (the loop
# goes on at its interval, which may be short).
_failed = LogThrottle(log)

# A heartbeat older than this many intervals counts as stale; past STALE_DROP it is removed.
STALE_INTERVALS = 3
DROP_AFTER_S = 3600


class NodeHeartbeat:
    """Writes this node's heartbeat while the app runs; reads every node's."""

    def __init__(self, services: Services, *, interval_s: float) -> None:
        self._s = services
        self.interval_s = interval_s
        self.node_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        # How this node verifies access tokens (auth.key_fingerprint): live nodes that differ
        # refuse each other's tokens (Alerts.token_keys).
        self.token_keys = fingerprint(services.tokens.config, services.tokens.jwks)

    def register(self, app: web.Application) -> None:
        """Run the heartbeat for the app's lifetime."""
        app[NODES_KEY] = self
        app.cleanup_ctx.append(self._lifetime)

    async def _lifetime(self, _: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(self._beat_forever())
        yield
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_WAIT_S)
        with contextlib.suppress(*REDIS_AWAY, TimeoutError):
            # Bounded: a stuck Redis must not hold up a shutdown (the entry then goes stale).
            await asyncio.wait_for(self._s.redis.hdel(self._s.keys.admin_nodes(), self.node_id), 2)

    def bus_live(self) -> bool:
        """Whether this node's bus listener is up (a process without a bus has none to be down).

        A bus not started yet is not down: the first heartbeat is written as the node starts,
        before its bus, and said "bus not live" for one interval (5 s), a bus_down alert at every
        restart of a rolling deploy. A bus that fails to start ends the process, and its
        heartbeat then goes stale."""
        bus = self._s.bus
        return bool(getattr(bus, "starting", False) or getattr(bus, "alive", True))

    def heartbeat(self) -> str:
        """This node's heartbeat now, as written."""
        metrics = self._s.metrics
        heartbeat = {
            "bus_live": self.bus_live(),
            "ts": self._s.clock.now_ms(),
            "pid": os.getpid(),
            "clients": metrics.clients_now,
            "subscriptions": metrics.subscriptions_now,
            "token_keys": self.token_keys,
            "history_lost": metrics.history_lost_now,
            "history_lost_at": metrics.history_lost_at_ms,
        }
        return json.dumps(heartbeat)

    async def beat(self) -> None:
        """Write this node's heartbeat now."""
        await self._s.redis.hset(self._s.keys.admin_nodes(), self.node_id, self.heartbeat())

    async def _beat_forever(self) -> None:
        told = False
        while not cancelled():
            try:
                if told:
                    await self.beat()
                else:  # the first: its reading of the nodes writes this node's heartbeat too
                    told = True
                    await self._say_if_token_keys_differ()
            except REDIS_AWAY as exc:
                stop_if_cancelled(exc)
                log.warning("node heartbeat failed: %s", exc)
            except Exception as exc:  # a bug or a client library's own error must not end the loop
                _failed.exception("node heartbeat failed", exc)
            await rest(self.interval_s)

    async def _say_if_token_keys_differ(self) -> None:
        """Once, as the node starts: an error line when live nodes verify tokens differently
        (the critical alert token_keys_differ says it for as long as it lasts)."""
        groups = token_key_groups(await self.nodes())
        others = [node for keys, nodes in groups.items() if keys != self.token_keys for node in nodes]
        if others:
            log.error(
                "this node verifies access tokens with another key than %d live node(s) (%s): give every node"
                " the same SESSIONHUB_JWT_SECRET (or public key), algorithm, issuer and audience; each refuses"
                " the tokens the others mint",
                len(others), ", ".join(sorted(others)[:5]),
            )  # fmt: skip

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node's last heartbeat (this node's written now), ``stale`` when it stopped beating.

        A Redis that cannot write its disk (MISCONF) refuses the write, not the read: the nodes
        are listed all the same, this one with its heartbeat of now (the dashboard failed whole)."""
        refused = False
        try:
            await self.beat()
        except REDIS_AWAY as exc:
            if disk_refusal(exc) is None:
                raise
            refused = True
        raw: Any = await self._s.redis.hgetall(self._s.keys.admin_nodes())
        if refused:
            raw[self.node_id] = self.heartbeat()
        now = self._s.clock.now_ms()
        found: list[dict[str, Any]] = []
        for node_id, text in sorted(raw.items()):
            try:
                beat = json.loads(text)
                age_ms = now - int(beat["ts"])
                live = bool(beat["bus_live"])
            except (ValueError, KeyError, TypeError):
                continue
            if age_ms > DROP_AFTER_S * 1000:
                if not refused:  # dropped at a later read, once Redis writes again
                    await self._s.redis.hdel(self._s.keys.admin_nodes(), node_id)
                continue
            stale = age_ms > STALE_INTERVALS * self.interval_s * 1000
            found.append(
                {
                    "node": node_id,
                    "bus_live": live,
                    "stale": stale,
                    "age_ms": max(age_ms, 0),
                    # None from a node that does not report them yet (an older version mid-deploy),
                    # and from one whose heartbeat stopped: a node killed kept its last counts for
                    # the hour it is listed, and the nodes' clients added up to more than were
                    # connected (its clients had moved to the others)
                    "clients": None if stale else _count(beat.get("clients")),
                    "subscriptions": None if stale else _count(beat.get("subscriptions")),
                    # None from a node of before it was said (an older version mid-deploy)
                    "token_keys": _text(beat.get("token_keys")),
                    # Kept from a stale node too: what Redis lost is lost whether the node lives on.
                    "history_lost": _count(beat.get("history_lost")) or 0,
                    "history_lost_at": _count(beat.get("history_lost_at")) or None,
                }
            )
        return found


def _count(value: Any) -> int | None:
    """A count from a heartbeat, None when absent or not a whole number."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_key_groups(node_list: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The live nodes (not stale) that report a token-key fingerprint, by fingerprint."""
    groups: dict[str, list[str]] = {}
    for node in node_list:
        keys = node.get("token_keys")
        if keys and not node.get("stale"):
            groups.setdefault(keys, []).append(str(node["node"]))
    return groups


def _text(value: Any) -> str | None:
    """A short text from a heartbeat, None when absent or not one."""
    return value if isinstance(value, str) and len(value) <= 64 else None


# The app's heartbeat (its node id names this node in /admin/metrics).
NODES_KEY = web.AppKey("admin_nodes", NodeHeartbeat)
