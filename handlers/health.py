"""``/healthz`` (the process is up) and ``/readyz`` (Redis answers and the bus listens)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from handlers.http_common import FIXED_ANSWERS, FixedAnswer
from handlers.openapi_registry import Auth, Operation, document
from storage.failures import disk_refusal
from storage.memory import without_replica


class Liveness(BaseModel):
    """``/healthz``."""

    ok: bool


class Readiness(Liveness):
    """``/readyz``: ``ok`` when both parts are."""

    redis: bool
    bus: bool
    # Why the node is not fully serving although its parts answer: "redis_full: ..." or
    # "redis_disk_error: ..." (writes refused) or "no_replica: ..." (changes not confirmed under
    # replica durability).
    degraded: str | None = None


OPERATIONS = (
    Operation(
        "get",
        "/healthz",
        "Liveness: 200 while the process serves requests",
        tag="health",
        auth=Auth.NONE,
        response=Liveness,
    ),
    Operation(
        "get",
        "/readyz",
        "Readiness: 200 when Redis answers and the bus listens, else 503 (also when Redis refuses"
        " writes, full or unable to write its disk, or, under SESSIONHUB_DURABILITY=replica, a primary"
        " has no replica in sync: `degraded` says which)",
        tag="health",
        auth=Auth.NONE,
        ok=(200, 503),  # both with the probe's own body
        response=Readiness,
    ),
)


# The longest /readyz waits for Redis' PING: a Redis that answers nothing and closes nothing
# (frozen, or cut off by the network) held every probe for as long as it was away -- a single
# Redis's link has no read timeout (long blocking reads are the bus's) -- where a load balancer
# wants a 503 it can act on (audit "frozenmaster").
PING_BOUND_S = 2.0
# The longest /readyz waits for the memory figures (``redis_full``): on a cluster they are read
# from every primary, and one that hangs must not hold a probe (which gives up in a second or
# so); past it the probe answers as when INFO is refused (below).
MEMORY_READ_BOUND_S = 1.0
# A probe whose memory read fails or runs past that bound answers with the last verdict read in
# this many seconds: a full Redis on a loaded node stays 503 instead of flapping to 200 on every
# slow read (a load balancer would send it traffic it refuses), while a verdict older than this
# is not trusted (memory may have been freed meanwhile).
MEMORY_VERDICT_KEPT_S = 30.0

# /healthz's one answer, given by the route and by the site (FIXED_ANSWERS).
LIVE = FixedAnswer("application/json; charset=utf-8", Liveness(ok=True).model_dump_json().encode())


class HealthRoutes:
    """Liveness and readiness probes."""

    def __init__(
        self,
        *,
        redis_ping: Callable[[], Awaitable[object]],
        bus_alive: Callable[[], bool],
        redis_memory: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
        redis_replication: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
    ) -> None:
        self._redis_ping = redis_ping
        self._bus_alive = bus_alive
        self._redis_memory = redis_memory  # INFO memory of each node (every primary of a cluster)
        # INFO replication of each primary, given when changes wait for a replica
        # (SESSIONHUB_DURABILITY=replica): a primary without one answers every change of its
        # slots `unavailable` after the durability timeout, however healthy it looks otherwise.
        self._redis_replication = redis_replication
        # The last memory verdict read (None: not full) and when; see MEMORY_VERDICT_KEPT_S.
        self._verdict: tuple[float, str | None] | None = None

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/healthz", self.healthz)
        # Answered by the listening site itself when a whole request is in at accept (one loop
        # turn instead of four or five: the probe of a node busy with a reconnect storm).
        app.setdefault(FIXED_ANSWERS, {})["/healthz"] = LIVE
        app.router.add_get("/readyz", self.readyz)
        document(app, OPERATIONS)

    async def healthz(self, request: web.Request) -> web.Response:
        """Always 200 while the process serves requests."""
        return web.Response(body=LIVE.body, content_type="application/json", charset="utf-8")

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when Redis answers a PING and the bus listener is alive, else 503."""
        degraded = None
        try:
            await asyncio.wait_for(self._redis_ping(), PING_BOUND_S)
            redis_ok = True
        except Exception as exc:  # any failure to reach Redis means not ready
            # A Redis that cannot write its disk refuses PING too (MISCONF): it answers, and
            # reads go on, but every write is refused until it can write again.
            refusal = disk_refusal(exc)
            redis_ok = refusal is not None
            if refusal is not None:
                degraded = f"redis_disk_error: Redis cannot write to its disk ({refusal}); writes are refused"
        bus_ok = self._bus_alive()
        if redis_ok and degraded is None:
            # Read together: each is bounded (a primary that hangs), and a probe gives up early.
            full, alone = await asyncio.gather(self._full(), self._unreplicated())
            degraded = full or alone
        ready = redis_ok and bus_ok and degraded is None
        answer = Readiness(ok=ready, redis=redis_ok, bus=bus_ok, degraded=degraded)
        return web.json_response(answer.model_dump(), status=200 if ready else 503)

    async def _full(self) -> str | None:
        """``redis_full: ...`` when Redis (on a cluster: any primary, since a write may land on
        any shard) is at its maxmemory under a policy that refuses writes."""
        if self._redis_memory is None:
            return None
        try:
            nodes = await self._redis_memory()
        except Exception:  # INFO refused (a managed Redis may rename it), or too slow
            kept = self._verdict
            if kept is not None and time.monotonic() - kept[0] <= MEMORY_VERDICT_KEPT_S:
                return kept[1]
            return None  # nothing recent to say
        verdict = _full_verdict(nodes)
        self._verdict = (time.monotonic(), verdict)
        return verdict

    async def _unreplicated(self) -> str | None:
        """``no_replica: ...`` when a primary has no replica in sync to confirm changes."""
        if self._redis_replication is None:
            return None
        try:
            primaries = await self._redis_replication()
        except Exception:  # INFO refused or too slow: the memory read's verdict stands alone
            return None
        alone = without_replica(primaries)
        if not alone:
            return None
        return (
            f"no_replica: {alone} of {len(primaries)} Redis primaries have no replica in sync;"
            " changes are applied but answered unavailable (SESSIONHUB_DURABILITY=replica)"
        )


def _full_verdict(nodes: list[dict[str, Any]]) -> str | None:
    """``redis_full: ...`` for the first of ``nodes`` (INFO memory answers) that refuses writes."""
    for info in nodes:
        try:
            used, limit = int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))
        except (TypeError, ValueError):
            continue
        policy = str(info.get("maxmemory_policy", ""))
        # Under noeviction (and volatile-* with nothing volatile left) a full Redis refuses writes.
        if limit > 0 and used >= limit and (policy == "noeviction" or policy.startswith("volatile")):
            return f"redis_full: {used} bytes used of maxmemory {limit} ({policy}); writes are refused"
    return None
