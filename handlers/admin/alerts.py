"""Operator alerts, computed on demand from the admin counters, Redis INFO and the job queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, get_args

from redis.exceptions import RedisClusterException, RedisError, ResponseError

from handlers.admin.config import AdminConfig
from handlers.admin.nodes import NodeHeartbeat, token_key_groups
from handlers.context import Services
from storage.admin.repository import AdminStore
from storage.events import Durability
from storage.failures import REDIS_AWAY, disk_refusal
from storage.memory import (
    evicting_policies,
    fullest,
    memory_infos,
    replication_infos,
    silent_primaries,
    without_replica,
)
from storage.redis_fitness import eviction_warning, info_refused_warning

HOUR_MS = 3_600_000
# A node's last sight of a history Redis lost is said for this long (then its log has it).
HISTORY_LOST_SHOWN_MS = 24 * HOUR_MS
# The creation-rate alert compares the last hour with up to this many hours before it, and only
# once the store holds sessions from at least SPIKE_HISTORY_MIN_H of them.
SPIKE_HISTORY_MAX_H = 24
SPIKE_HISTORY_MIN_H = 6
LARGEST_SHOWN = 5

# Every alert a check may raise (``/metrics`` has a gauge for each, 0 when not raised; the
# answer's model names them: handlers.admin.answers).
AlertName = Literal[
    "memory",
    "creation_rate",
    "large_sessions",
    "dead_letters",
    "jobs_stuck",
    "jobs_waiting",
    "bus_down",
    "token_keys_differ",
    "redis_unreachable",
    "redis_disk_error",
    "redis_eviction",
    "redis_info_refused",
    "no_replica",
    "disk",
    "blob_store",
    "history_lost",
]
ALERT_NAMES: tuple[str, ...] = get_args(AlertName)
REDIS_UNREACHABLE = "redis_unreachable"
REDIS_DISK_ERROR = "redis_disk_error"


# A worker heard from (a claim, every second or so while it runs) this recently is running.
WORKER_HEARD_MS = 60_000


def _alert(name: str, message: str, **values: Any) -> dict[str, Any]:
    return {"alert": name, "severity": "warning", "message": message, **values}


def _unreachable(message: str) -> dict[str, Any]:
    return {**_alert(REDIS_UNREACHABLE, message), "severity": "critical"}


def _disk_error(refusal: str) -> dict[str, Any]:
    message = (
        f"Redis cannot write to its disk ({refusal}): every write is refused (503 unavailable,"
        " reason redis_disk_error) until it can; reads go on. Free room on its disk (deleting sessions"
        " needs writes: remove other files first)"
    )
    return {**_alert(REDIS_DISK_ERROR, message, redis_says=refusal), "severity": "critical"}


class Alerts:
    """Every alert check; each returns the alerts it raises (none when all is well)."""

    def __init__(self, services: Services, store: AdminStore, config: AdminConfig, nodes: NodeHeartbeat) -> None:
        self._s = services
        self._store = store
        self._config = config
        self._nodes = nodes

    async def check(self, node_list: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The alerts raised now. A check that finds Redis away raises ``redis_unreachable``
        (once) and the others still run: one failing check failed the whole answer (503), so the
        alert made for that case never reached an operator, and on a cluster one primary that
        does not answer leaves the others' checks to say what they can."""
        found = await self.memory()
        checks: list[Callable[[], Awaitable[list[dict[str, Any]]]]] = [
            self.redis_disk,
            self.creation_rate,
            self.large_sessions,
            self.jobs,
            lambda: self._buses(node_list),
            lambda: self._token_keys(node_list),
            lambda: self._history_lost(node_list),
            self.replicas,
            self.disk,
            self.blob_store,
        ]
        for check in checks:
            try:
                found += await check()
            except REDIS_AWAY as exc:
                refusal = disk_refusal(exc)  # Redis answers: it refuses a write (said by redis_disk)
                if refusal is None and not any(alert["alert"] == REDIS_UNREACHABLE for alert in found):
                    found.append(_unreachable(f"Redis did not answer: {exc}"))
        # Last: the other checks run as soon as they would have (a cluster client's reading of its
        # map, started by another call's timeout, may wait on the same master meanwhile).
        return [await self._named(alert) if alert["alert"] == REDIS_UNREACHABLE else alert for alert in found]

    async def _named(self, alert: dict[str, Any]) -> dict[str, Any]:
        """``redis_unreachable`` naming the primaries of a cluster that do not answer a PING:
        "did not answer" alone left an operator to find which of the masters it was."""
        try:
            silent = await silent_primaries(self._s.redis, self._s.storage_guard.read_bound_s)
        except (RedisError, RedisClusterException, OSError, TimeoutError):  # not even the map
            silent = []
        if not silent:
            return alert
        return {
            **alert,
            "message": f"{alert['message']}; primaries not answering: {', '.join(silent)}",
            "primaries": silent,
        }

    async def redis_disk(self) -> list[dict[str, Any]]:
        """Redis refusing every write because it cannot write to its disk (MISCONF: its
        append-only file or its snapshot failed, a full disk most often). PING is refused in
        that state and only then, so it asks without writing anything."""
        try:
            await self._s.redis.ping()
        except REDIS_AWAY as exc:
            refusal = disk_refusal(exc)
            if refusal is None:
                raise
            return [_disk_error(refusal)]
        return []

    @staticmethod
    def eviction(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A Redis that deletes keys of its own accord when full (a ``maxmemory`` under any
        ``maxmemory-policy`` but ``noeviction``, on any of ``nodes``, INFO memory): sessions,
        logs and retry records may go without a word. Said until the policy is changed, full or
        not: by then it is too late."""
        policies = evicting_policies(nodes)
        if not policies:
            return []
        message = eviction_warning(policies, len(nodes))
        return [{**_alert("redis_eviction", message, policies=sorted(set(policies))), "severity": "critical"}]

    async def _token_keys(self, node_list: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return self.token_keys(node_list if node_list is not None else await self._nodes.nodes())

    async def _buses(self, node_list: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return self.buses(node_list if node_list is not None else await self._nodes.nodes())

    async def replicas(self) -> list[dict[str, Any]]:
        """Under ``SESSIONHUB_DURABILITY=replica``, the primaries with no replica in sync: every
        change of their slots is applied but answered ``unavailable`` (``/readyz`` says 503)."""
        if self._s.log.durability is not Durability.REPLICA:
            return []
        try:
            primaries = await replication_infos(self._s.redis, self._s.storage_guard.read_bound_s)
        except (RedisError, RedisClusterException, OSError, TimeoutError):  # said by `memory`
            return []
        alone = without_replica(primaries)
        if not alone:
            return []
        message = (
            f"{alone} of {len(primaries)} Redis primaries have no replica in sync: their changes are applied"
            " but answered unavailable (SESSIONHUB_DURABILITY=replica)"
        )
        return [
            {**_alert("no_replica", message, primaries=len(primaries), without_replica=alone), "severity": "critical"}
        ]

    async def memory(self) -> list[dict[str, Any]]:
        """Redis memory near ``maxmemory`` (or the configured budget); past the storage guard's
        share it says that new sessions and guests are being refused (``storage_refusing``)."""
        guard = self._s.storage_guard
        try:
            # Bounded as the guard's own read: a primary that hangs (no socket timeout on a
            # cluster) held /admin/alerts, and /admin/metrics, for good. Read once for both
            # alerts of it: each reading on its own waited that bound twice for a hung primary.
            nodes = await memory_infos(self._s.redis, guard.read_bound_s)
        except ResponseError as exc:  # it answered: it refuses INFO (an ACL without it), not unreachable
            return [_alert("redis_info_refused", info_refused_warning(str(exc)))]
        except (RedisError, RedisClusterException, OSError, TimeoutError):  # cluster: no node answers
            return [_unreachable("Redis did not answer INFO memory")]
        found = self.eviction(nodes)
        figures = fullest(nodes, self._config.memory_budget_bytes)
        used, budget = figures.used_bytes, figures.budget_bytes
        refusing = guard.over(used, budget)
        if not refusing and (budget <= 0 or used < budget * self._config.memory_alert_ratio):
            return found
        message = f"Redis uses {used / budget:.0%} of its memory budget"
        if refusing:
            message += (
                f"; over the storage guard's {guard.ratio:.0%}: new sessions, remixes, publishes and guest"
                " identities are refused (503 storage_full) until memory is freed"
            )
        alert = _alert("memory", message, used_bytes=used, budget_bytes=budget, storage_refusing=refusing)
        alert["storage_guard_ratio"] = guard.ratio
        alert["storage_refused"] = guard.refused  # by this node since it started
        if refusing:
            alert["severity"] = "critical"
        return [alert, *found]

    async def disk(self) -> list[dict[str, Any]]:
        """A disk of this node (the audio folder's, the data folder's) with less free than the
        upload reserve, or a reserve larger than the whole disk: uploads are being refused, and
        a disk filling further fails the embedded Redis's file."""
        return [
            {**_alert("disk", shortfall.message(), **shortfall.values()), "severity": "critical"}
            for shortfall in self._s.disk.shortfalls()
        ]

    async def blob_store(self) -> list[dict[str, Any]]:
        """The audio store (an S3 bucket) refused or did not answer this node's last call, and
        none went through since: chunk uploads and plays are refused until it answers. Said
        only in the log before (one line a minute), the dashboard showing all well."""
        trouble = self._s.voice.blobs.trouble()
        return [] if trouble is None else [{**_alert("blob_store", trouble), "severity": "critical"}]

    async def creation_rate(self) -> list[dict[str, Any]]:
        """Sessions created in the last hour far above the hourly average of the hours before it.

        The hours compared with are those the store has sessions for (from the oldest one's
        creation, at most the 24 before the last hour). With fewer than
        :data:`SPIKE_HISTORY_MIN_H` there is nothing to compare with: on a new server any use
        at all was "N sessions created in the last hour (hourly average 0.0)".
        """
        now = self._s.clock.now_ms()
        hour_ago = now - HOUR_MS
        first_ms = await self._store.first_created_ms()
        if first_ms is None:
            return []
        since = max(first_ms, hour_ago - SPIKE_HISTORY_MAX_H * HOUR_MS)
        history_h = (hour_ago - since) / HOUR_MS
        if history_h < SPIKE_HISTORY_MIN_H:
            return []
        last_hour = await self._store.created_between(hour_ago, now + 1)
        before = await self._store.created_between(since, hour_ago)
        average = before / history_h
        limit = max(average * self._config.creation_spike_factor, self._config.creation_spike_min)
        if last_hour < limit:
            return []
        return [
            _alert(
                "creation_rate",
                f"{last_hour} sessions created in the last hour (hourly average {average:.1f}"
                f" over the {history_h:.0f} h before)",
                last_hour=last_hour,
                hourly_average=round(average, 2),
                history_hours=round(history_h, 2),
            )
        ]

    async def large_sessions(self) -> list[dict[str, Any]]:
        """Sessions stored in more than the configured size (100 KB)."""
        limit = self._config.large_session_bytes
        count = await self._store.count_larger(limit + 1)
        if count == 0:
            return []
        largest = await self._store.largest(min_bytes=limit + 1, limit=LARGEST_SHOWN)
        return [
            _alert(
                "large_sessions",
                f"{count} session(s) over {limit // 1024} KB",
                count=count,
                largest=[{"session_id": sid, "size_bytes": size} for sid, size in largest],
            )
        ]

    async def jobs(self) -> list[dict[str, Any]]:
        """A job delivered long ago and never finished, or dead-lettered jobs."""
        found: list[dict[str, Any]] = []
        counts = await self._s.jobs.counts()
        if counts["dead"] >= self._config.dead_letter_alert:
            dead = counts["dead"]
            # Where to act on them: the alert stays until the list is under the threshold.
            text = f"{dead} job(s) in the dead-letter list: retry or discard them under Dead letters on /admin"
            found.append(_alert("dead_letters", f"{text} (or sessionhub admin dead-letters)", dead=dead))
        keys = self._s.keys
        try:
            stuck = await self._s.redis.xpending_range(
                keys.jobs(), keys.jobs_group(), min="-", max="+", count=1, idle=self._config.job_stuck_s * 1000
            )
        except ResponseError:
            stuck = []  # no consumer group yet: no job was ever claimed
        if stuck:
            # Held without a heartbeat (a running job's claim is renewed every third of the
            # visibility timeout): its worker stopped or stalls. It said "running" of a job whose
            # worker had been killed (audit "jobsreal").
            held = stuck[0]
            consumer = held.get("consumer")
            worker = consumer.decode() if isinstance(consumer, bytes) else str(consumer)
            message = (
                f"a job held by worker {worker} has had no heartbeat for over"
                f" {self._config.job_stuck_s} s: that worker stopped or stalls; another takes the job over"
                " once SESSIONHUB_JOB_VISIBILITY_MS has passed"
            )
            found.append(_alert("jobs_stuck", message, oldest=held))
        return found + await self.jobs_waiting()

    async def jobs_waiting(self) -> list[dict[str, Any]]:
        """Jobs no worker has taken up for longer than the stuck threshold: no worker running, or
        too few. Only a Prometheus gauge said it (audit "jobsreal": a Done queued with no worker
        for a quarter of an hour raised nothing), while people's pages said "waiting"."""
        limit_ms = self._config.job_stuck_s * 1000
        now = self._s.clock.now_ms()
        backlog = await self._s.jobs.backlog(overdue_ms=limit_ms)
        waited_ms = 0 if backlog.oldest_ms is None else now - backlog.oldest_ms
        if waited_ms < limit_ms and backlog.overdue == 0:
            return []
        heard = [at for at in (await self._s.jobs.workers()).values() if now - at <= WORKER_HEARD_MS]
        who = (
            f"{len(heard)} worker(s) heard from in the last minute: too few for the load, or stalled"
            if heard
            else "no worker heard from in the last minute: start `sessionhub worker`, or give"
            " SESSIONHUB_INPROCESS_WORKERS a number over 0"
        )
        waiting = backlog.waiting + backlog.overdue
        message = (
            f"{waiting} job(s) waiting for a worker for over {self._config.job_stuck_s} s (the oldest"
            f" {max(waited_ms, limit_ms) // 1000} s); {who}"
        )
        return [_alert("jobs_waiting", message, waiting=waiting, oldest_waited_ms=waited_ms, workers=len(heard))]

    @staticmethod
    def token_keys(node_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Live nodes that verify access tokens differently (another SESSIONHUB_JWT_SECRET or
        public key, algorithm, issuer or audience): each refuses the tokens the others mint."""
        groups = token_key_groups(node_list)
        if len(groups) < 2:
            return []
        message = (
            f"{len(groups)} groups of live nodes verify access tokens with different keys (SESSIONHUB_JWT_SECRET"
            " or SESSIONHUB_JWT_PUBLIC_KEY, the algorithm, issuer or audience; nodes without a secret each use"
            " their data folder's development secret): a token minted by one is refused by the others, and"
            " people moving between them are signed in again and again. Give every node the same settings"
        )
        nodes = [sorted(group) for group in groups.values()]
        return [{**_alert("token_keys_differ", message, nodes=nodes), "severity": "critical"}]

    async def _history_lost(self, node_list: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        nodes = node_list if node_list is not None else await self._nodes.nodes()
        return self.history_lost(nodes, self._s.clock.now_ms())

    @staticmethod
    def history_lost(node_list: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
        """Nodes that saw Redis lose the history of sessions they follow, in the last day: a Redis
        restarted without its data, flushed, evicting, or a failover to a replica that lagged.
        Their subscribers were told to resync, and nothing but each node's log said so."""
        found = []
        for node in node_list:
            at = node.get("history_lost_at")
            if not node.get("history_lost") or not at or now_ms - at > HISTORY_LOST_SHOWN_MS:
                continue
            message = (
                f"node {node['node']}: Redis lost the history of {node['history_lost']} session(s) it follows"
                f" since it started, the last {max(now_ms - at, 0) // 60_000} min ago (Redis restarted without its"
                " data, flushed, evicting keys, or a failover to a replica that lagged): their clients were told"
                " to resync; the node's log names the sessions"
            )
            found.append(_alert("history_lost", message, node=node["node"], sessions=node["history_lost"], last_at=at))
        return found

    @staticmethod
    def buses(node_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Nodes whose bus is down or whose heartbeat stopped."""
        return [
            _alert(
                "bus_down",
                f"node {node['node']}: {'heartbeat stopped' if node['stale'] else 'bus not live'}",
                node=node["node"],
            )
            for node in node_list
            if node["stale"] or not node["bus_live"]
        ]
