"""Per-node heartbeats: each serve node says every few seconds whether its bus is live, and how
many clients and subscriptions it serves (from its ``Metrics``).

The dashboard lists the nodes and raises an alert for a node whose bus is down or whose
heartbeat stopped (a node that died leaves its last heartbeat behind, which then goes stale).
Each heartbeat says the address the node listens on: a dead node whose address a node of the
same host began to listen on after its last heartbeat was replaced (restarted), not down.
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

# A heartbeat older than this many intervals counts as stale; past DROP_AFTER_S it is removed.
STALE_INTERVALS = 3
DROP_AFTER_S = 3600
# A node replaced by a later one on its address (restarted) is not listed, and no alert: its
# successor's row names it (``replaces``) for this long after its last heartbeat, then it is dropped.
REPLACED_KEPT_S = 600
# How long writing the heartbeat that first says the node's address may hold up its start.
ADDRESS_BEAT_BOUND_S = 2.0


class NodeHeartbeat:
    """Writes this node's heartbeat while the app runs; reads every node's."""

    def __init__(self, services: Services, *, interval_s: float) -> None:
        self._s = services
        self.interval_s = interval_s
        self.node_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
        # Where it listens (host:port) and since when (ms), once serving: None until then, and in
        # a process that serves no port of its own (an in-process test server, unless told).
        self.address: str | None = None
        self.listening_since_ms: int | None = None
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

    async def listening_on(self, host: str, port: int) -> None:
        """Say in this node's heartbeat, written now, the address it began to listen on (the
        port bound: 0 asks for any). A node replaces a dead one listed on the same address."""
        self.address = listen_address(host, port)
        self.listening_since_ms = self._s.clock.now_ms()
        with contextlib.suppress(*REDIS_AWAY, TimeoutError):  # the next heartbeat says it
            await asyncio.wait_for(self.beat(), ADDRESS_BEAT_BOUND_S)

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
            "address": self.address,
            "listening_since": self.listening_since_ms,
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
        """Every node's last heartbeat (this node's written now), ``stale`` when it stopped beating;
        a node replaced by a later one on its address is named by that one (``replaces``) instead.

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
        beats = _parsed(raw)
        now = self._s.clock.now_ms()
        successors = _successors(beats)
        found: list[dict[str, Any]] = []
        for node_id, beat in sorted(beats.items()):
            age_ms = now - int(beat["ts"])
            replaced = node_id in successors
            if age_ms > (REPLACED_KEPT_S if replaced else DROP_AFTER_S) * 1000:
                if not refused:  # dropped at a later read, once Redis writes again
                    await self._s.redis.hdel(self._s.keys.admin_nodes(), node_id)
                continue
            if replaced:  # not down: restarted, said on its successor's row (``replaces``)
                continue
            stale = age_ms > STALE_INTERVALS * self.interval_s * 1000
            replaces = [old for old, new in successors.items() if new == node_id]
            replaces.sort(key=lambda old: -int(beats[old]["ts"]))  # the last one first
            found.append(_figures(node_id, beat, age_ms=age_ms, stale=stale, replaces=replaces))
        return found


def listen_address(host: str, port: int) -> str:
    """``host:port`` (an IPv6 host in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parsed(raw: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The heartbeats that can be read, by node id (a torn or foreign value is left out)."""
    beats: dict[str, dict[str, Any]] = {}
    for node_id, text in raw.items():
        try:
            beat = json.loads(text)
            int(beat["ts"])
            bool(beat["bus_live"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(beat, dict):
            beats[node_id] = beat
    return beats


def _successors(beats: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Node id -> the node that replaced it: the newest of the same host (the node id's first
    part) that began to listen on its address after its last heartbeat. Two processes of one host
    cannot both listen on one address, so the earlier one has stopped, whatever its record says;
    a node of another host on the same address (``0.0.0.0:8080`` everywhere) replaces nothing.
    A node whose heartbeat says no address (an older version mid-deploy) neither is nor has one."""
    by_place: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for node_id, beat in beats.items():
        address, since = _text(beat.get("address")), _count(beat.get("listening_since"))
        if address is not None and since is not None:
            by_place.setdefault((_host_of(node_id), address), []).append((since, node_id))
    found: dict[str, str] = {}
    for node_id, beat in beats.items():
        place = (_host_of(node_id), _text(beat.get("address")) or "")
        ts = int(beat["ts"])
        later = [(since, other) for since, other in by_place.get(place, []) if since > ts and other != node_id]
        if later:
            found[node_id] = max(later)[1]
    return found


def _host_of(node_id: str) -> str:
    """The host name a node id starts with (``host:pid:random``)."""
    return node_id.split(":", 1)[0]


def _figures(node_id: str, beat: dict[str, Any], *, age_ms: int, stale: bool, replaces: list[str]) -> dict[str, Any]:
    """A node as ``/admin/metrics`` lists it, from its last heartbeat."""
    return {
        "node": node_id,
        "bus_live": bool(beat["bus_live"]),
        "stale": stale,
        "age_ms": max(age_ms, 0),
        # None from a node that does not report them yet (an older version mid-deploy), and from
        # one whose heartbeat stopped: a node killed kept its last counts for the hour it is
        # listed, and the nodes' clients added up to more than were connected (its clients had
        # moved to the others)
        "clients": None if stale else _count(beat.get("clients")),
        "subscriptions": None if stale else _count(beat.get("subscriptions")),
        # None from a node of before it was said (an older version mid-deploy)
        "token_keys": _text(beat.get("token_keys")),
        # Kept from a stale node too: what Redis lost is lost whether the node lives on.
        "history_lost": _count(beat.get("history_lost")) or 0,
        "history_lost_at": _count(beat.get("history_lost_at")) or None,
        # None from a node of before it was said, or not serving a port yet
        "address": _text(beat.get("address")),
        # The nodes it was started in place of (their heartbeat stopped before it listened on
        # their address), newest first: restarted, not down; each shown here for REPLACED_KEPT_S.
        "replaces": replaces,
    }


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
