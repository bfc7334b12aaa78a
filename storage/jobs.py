"""The post-processing job queue: a Redis stream with a consumer group, retries, dead letters.

A job is delivered to one worker of the group at a time. It is acknowledged only once its
outcome is stored; a worker that dies holding a job loses it to another worker after
``visibility_ms`` (XAUTOCLAIM). A worker still running a job extends its claim (a heartbeat,
:meth:`JobQueue.extend`) well within ``visibility_ms``, so a slow job is never handed to a second
worker while the first still runs it. A failed attempt is parked in a delayed set and comes back
after an exponential back-off; after ``max_attempts`` it goes to the dead-letter list.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from storage.clock import Clock
from storage.keys import Keys
from storage.scripts import plain_script

JOB_STREAM_MAXLEN = 100_000
# Dead-lettered jobs kept, newest first. A guest may dead-letter a job at will (Done, then delete
# the session before it ran: "the session no longer exists"), and guests and their sessions are
# cheap: uncapped, the list only grew.
DEAD_LETTERS_MAX = 10_000
# How long enqueue_once remembers a job id: as long as a press's answer is kept for its resends
# (storage.voice.repository.REQUEST_TTL_MS), and no longer.
QUEUED_MARK_MS = 24 * 3600 * 1000
# How long a coalesced job keeps a second one from being queued, at most: the mark goes when the
# job starts; this bounds what a job lost before it started (a trimmed stream) holds back.
WAITING_MARK_MS = 3600 * 1000
# The payload field naming a coalesced job's mark (the worker drops the mark as the job starts).
COALESCE_FIELD = "coalesce"
# A consumer of the job group idle this long and holding no job is a process gone (killed: a
# stopping worker forgets its own): forgotten at the next worker's start.
IDLE_CONSUMER_FORGOTTEN_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of post-processing work."""

    type: str
    session_id: str
    performer_id: str
    telegram_user_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    # Attempts made before this one: failed, or interrupted (the worker died holding it).
    attempts: int = 0
    job_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    enqueued_at: int = 0
    last_error: str = ""

    def to_json(self) -> str:
        """Serialised form stored in the stream, the delayed set and the dead list."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(text))


# How long a job entry's count of started runs is kept: far longer than any run of it, and bounded,
# so the count of an entry gone without an outcome (trimmed from the stream) does not stay.
RUNS_MARK_MS = 7 * 24 * 3600 * 1000


def _interrupted(job: Job, runs: int) -> Job:
    """``job`` handed out again after ``runs`` runs of it started and never said how they went
    (their worker died, or its disk or Redis failed it): each was an attempt too, so ``attempts``
    counts them with the failed ones stored in the job itself."""
    return replace(job, attempts=job.attempts + runs)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job handed to a worker, with the stream entry id to acknowledge."""

    entry_id: str
    job: Job
    # Taken over from a worker that held it (XAUTOCLAIM), not read new: its runs may have died.
    reclaimed: bool = False


@dataclass(frozen=True, slots=True)
class Backlog:
    """The jobs waiting for a worker (JobQueue.backlog)."""

    waiting: int  # queued, never delivered to a worker
    oldest_ms: int | None  # when the oldest of them was queued (its stream id's time), if any
    overdue: int  # parked retries past their time by the asked margin


class JobQueue:
    """Producer and consumer side of the job queue."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._promote = plain_script(redis, "jobs/promote.lua")
        self._extend = plain_script(redis, "jobs/extend.lua")
        self._enqueue_once = plain_script(redis, "jobs/enqueue_once.lua")
        self.dead_max = DEAD_LETTERS_MAX

    async def enqueue(self, job: Job) -> Job:
        """Queue a job; returns it with its enqueue time set."""
        queued = replace(job, enqueued_at=self._clock.now_ms())
        await self._redis.xadd(self._keys.jobs(), {"job": queued.to_json()}, maxlen=JOB_STREAM_MAXLEN, approximate=True)
        return queued

    async def enqueue_once(self, job: Job) -> bool:
        """Queue a job unless one of its ``job_id`` was queued within :data:`QUEUED_MARK_MS`
        (``enqueue_once.lua``); True when it was queued now."""
        queued = replace(job, enqueued_at=self._clock.now_ms())
        keys = [self._keys.jobs(), self._keys.jobs_queued(job.job_id)]
        return bool(await self._enqueue_once(keys=keys, args=[queued.to_json(), JOB_STREAM_MAXLEN, QUEUED_MARK_MS]))

    async def was_queued(self, job_id: str) -> bool:
        """Whether a job of ``job_id`` was queued by :meth:`enqueue_once` within its mark's time."""
        return bool(await self._redis.exists(self._keys.jobs_queued(job_id)))

    async def enqueue_coalesced(self, job: Job, coalesce: str) -> bool:
        """Queue ``job`` unless one queued under the name ``coalesce`` has not started yet (it
        will see what this one would: a session's late chunks each ask for its processing once
        more, and a run not yet started does them all); True when it was queued now.

        The mark is dropped as the job starts (:meth:`started`), so a request that comes while
        it runs queues the next run: the running one may have read the session already."""
        marked = replace(job, payload={**job.payload, COALESCE_FIELD: coalesce}, enqueued_at=self._clock.now_ms())
        keys = [self._keys.jobs(), self._keys.jobs_waiting(coalesce)]
        return bool(await self._enqueue_once(keys=keys, args=[marked.to_json(), JOB_STREAM_MAXLEN, WAITING_MARK_MS]))

    async def started(self, delivery: Delivery, consumer: str) -> None:
        """A job starts: its entry counts one more run until an outcome is stored (and whose run,
        ``consumer``'s), and a coalesced one's mark goes, so the next request queues another run."""
        runs, run_by = self._keys.jobs_runs(delivery.entry_id), self._keys.jobs_run_by(delivery.entry_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(runs)
            pipe.pexpire(runs, RUNS_MARK_MS)
            pipe.hincrby(run_by, consumer, 1)
            pipe.pexpire(run_by, RUNS_MARK_MS)
            coalesce = delivery.job.payload.get(COALESCE_FIELD)
            if isinstance(coalesce, str) and coalesce:
                pipe.delete(self._keys.jobs_waiting(coalesce))
            await pipe.execute()

    async def unstarted(self, delivery: Delivery, consumer: str) -> None:
        """Take back the run :meth:`started` counted: its worker stopped it on purpose (a deploy,
        Ctrl-C), which is no death of the job's making. Only the claim's holder calls it."""
        runs, run_by = self._keys.jobs_runs(delivery.entry_id), self._keys.jobs_run_by(delivery.entry_id)
        if int(await self._redis.decr(runs)) <= 0:
            await self._redis.delete(runs)
        if int(await self._redis.hincrby(run_by, consumer, -1)) <= 0:
            await self._redis.hdel(run_by, consumer)

    async def heard_from(self, consumer: str) -> None:
        """``consumer`` is alive now (at each claim, and each heartbeat of a job it runs). Redis's
        own idle time of a consumer does not do: a read that finds nothing new leaves it as it was."""
        await self._redis.hset(self._keys.jobs_alive(), consumer, self._clock.now_ms())

    async def deaths(self, delivery: Delivery, *, silent_ms: int, besides: str) -> int:
        """How many runs of ``delivery``'s entry died with their worker: runs whose worker (not
        ``besides``, the asking one) has not been heard from (:meth:`heard_from`) for ``silent_ms``
        or more. A live worker is heard from every second or so while it waits for jobs, and every
        third of the visibility timeout while it runs one; a Redis reachable all that time (the
        caller's to know) would have heard from it. A run whose worker lost its claim alive
        (stalled, cut off, Redis away) is no death: that worker is heard from again."""
        run_by: dict[str, str] = await self._redis.hgetall(self._keys.jobs_run_by(delivery.entry_id))  # type: ignore[assignment]  # decode_responses=True
        counted = {consumer: int(runs) for consumer, runs in run_by.items() if consumer != besides and int(runs) > 0}
        if not counted:
            return 0
        seen: list[str | None] = await self._redis.hmget(self._keys.jobs_alive(), list(counted))  # type: ignore[assignment]  # decode_responses=True
        since_ms = self._clock.now_ms() - silent_ms
        return sum(runs for runs, at in zip(counted.values(), seen, strict=True) if not at or int(at) <= since_ms)

    async def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        try:
            await self._redis.xgroup_create(self._keys.jobs(), self._keys.jobs_group(), id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def retire(self, consumer: str | None, *, idle_ms: int = IDLE_CONSUMER_FORGOTTEN_MS) -> int:
        """Forget the group's consumers that hold no job: ``consumer`` (a worker stopping), and
        any idle ``idle_ms`` (a process killed: its jobs were reclaimed by the others). Each
        process that took a job left its consumer for good before: 1,000 restarts, 1,000 dead
        workers listed (audit "retention"). A consumer still holding a job is kept, so nothing
        pending is dropped; the number forgotten."""
        stream, group = self._keys.jobs(), self._keys.jobs_group()
        try:
            found: Any = await self._redis.xinfo_consumers(stream, group)
        except ResponseError:  # no stream or group yet: nothing to forget
            return 0
        gone = [
            str(c["name"])
            for c in found
            if int(c["pending"]) == 0 and (c["name"] == consumer or int(c["idle"]) >= idle_ms)
        ]
        for name in gone:
            await self._redis.xgroup_delconsumer(stream, group, name)
        # The marks of workers gone as long: one per process that ever ran, else.
        marks: dict[str, str] = await self._redis.hgetall(self._keys.jobs_alive())  # type: ignore[assignment]  # decode_responses=True
        old = [name for name, at in marks.items() if self._clock.now_ms() - int(at) >= idle_ms]
        if consumer is not None:
            old.append(consumer)
        if old:
            await self._redis.hdel(self._keys.jobs_alive(), *old)
        return len(gone)

    async def claim(self, consumer: str, *, count: int, block_ms: int, visibility_ms: int) -> list[Delivery]:
        """Jobs for ``consumer``: first any abandoned by a dead worker, then new ones.

        A Redis that comes back without the consumer group (restarted without persistence, one
        that lost its last second, a failover to a replica that never got the group, a flush)
        answers NOGROUP to every read: the group is made again (from the stream's start, so the
        jobs queued since are run) and the read repeated. Made only at a worker's start, it was
        never made again: every job queued after such a restart waited for a node restart.
        """
        await self.heard_from(consumer)
        try:
            return await self._claim(consumer, count=count, block_ms=block_ms, visibility_ms=visibility_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        await self.ensure_group()
        return await self._claim(consumer, count=count, block_ms=block_ms, visibility_ms=visibility_ms)

    async def _claim(self, consumer: str, *, count: int, block_ms: int, visibility_ms: int) -> list[Delivery]:
        await self._promote(
            keys=[self._keys.jobs_delayed(), self._keys.jobs()],
            args=[self._clock.now_ms(), count, JOB_STREAM_MAXLEN],
        )
        claimed: Any = await self._redis.xautoclaim(
            self._keys.jobs(), self._keys.jobs_group(), consumer, min_idle_time=visibility_ms, count=count
        )
        # Redis 6.2 answers [cursor, entries], 7.0+ adds a third element (deleted ids).
        entries = [e for e in claimed[1] if e[1]]
        if entries:
            return [
                Delivery(entry_id=entry_id, job=_interrupted(Job.from_json(fields["job"]), runs), reclaimed=True)
                for (entry_id, fields), runs in zip(entries, await self._runs(entries), strict=True)
            ]
        reply: Any = await self._redis.xreadgroup(
            self._keys.jobs_group(), consumer, {self._keys.jobs(): ">"}, count=count, block=block_ms
        )
        entries = [e for _, stream_entries in reply for e in stream_entries]
        return [Delivery(entry_id=entry_id, job=Job.from_json(fields["job"])) for entry_id, fields in entries]

    async def _runs(self, entries: list[Any]) -> list[int]:
        """How many runs of each reclaimed entry started and never said how they went. Counted as
        runs start, not Redis's delivery count: a worker takes a batch, and the jobs of a dead
        worker's batch still waiting their turn never ran (they counted as attempts made)."""
        found: list[str | None] = await self._redis.mget([self._keys.jobs_runs(entry_id) for entry_id, _ in entries])  # type: ignore[assignment]  # decode_responses=True
        return [int(runs) if runs else 0 for runs in found]

    async def extend(self, consumer: str, delivery: Delivery) -> bool:
        """Reset the idle time of a job ``consumer`` still runs; False when it holds it no more."""
        held = await self._extend(keys=[self._keys.jobs()], args=[self._keys.jobs_group(), consumer, delivery.entry_id])
        return bool(held)

    async def ack(self, delivery: Delivery) -> None:
        """The job is done: drop it from the pending list and the stream."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._keys.jobs(), self._keys.jobs_group(), delivery.entry_id)
            pipe.xdel(self._keys.jobs(), delivery.entry_id)
            pipe.delete(self._keys.jobs_runs(delivery.entry_id), self._keys.jobs_run_by(delivery.entry_id))
            await pipe.execute()

    async def retry_later(self, delivery: Delivery, *, delay_ms: int, error: str) -> Job:
        """Park a failed attempt until ``delay_ms`` from now, atomically with its ack."""
        job = replace(delivery.job, attempts=delivery.job.attempts + 1, last_error=error[:500])
        await self.park(delivery, job, delay_ms=delay_ms)
        return job

    async def park(self, delivery: Delivery, job: Job, *, delay_ms: int) -> None:
        """Park ``job`` (the delivery's, its id kept; its payload or attempts perhaps moved on)
        until ``delay_ms`` from now, atomically with the delivery's ack."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._keys.jobs_delayed(), {job.to_json(): self._clock.now_ms() + delay_ms})
            pipe.xack(self._keys.jobs(), self._keys.jobs_group(), delivery.entry_id)
            pipe.xdel(self._keys.jobs(), delivery.entry_id)
            pipe.delete(self._keys.jobs_runs(delivery.entry_id), self._keys.jobs_run_by(delivery.entry_id))
            await pipe.execute()

    async def bury(self, delivery: Delivery, *, error: str, ran: bool = True) -> Job:
        """Move a job that ran out of attempts to the dead-letter list (the newest ``dead_max``
        kept); ``ran``: this delivery was an attempt (else it is buried unrun)."""
        job = replace(delivery.job, attempts=delivery.job.attempts + (1 if ran else 0), last_error=error[:500])
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self._keys.jobs_dead(), job.to_json())
            pipe.ltrim(self._keys.jobs_dead(), 0, self.dead_max - 1)
            # When, beside the job (its JSON is what a retry queues again, and an older worker
            # reads it: a field it does not know would fail it); as many kept as the list holds.
            pipe.zadd(self._keys.jobs_dead_at(), {job.job_id: self._clock.now_ms()})
            pipe.zremrangebyrank(self._keys.jobs_dead_at(), 0, -self.dead_max - 1)
            pipe.xack(self._keys.jobs(), self._keys.jobs_group(), delivery.entry_id)
            pipe.xdel(self._keys.jobs(), delivery.entry_id)
            pipe.delete(self._keys.jobs_runs(delivery.entry_id), self._keys.jobs_run_by(delivery.entry_id))
            await pipe.execute()
        return job

    async def dead(self, *, limit: int = 100) -> list[Job]:
        """The newest dead-lettered jobs."""
        texts: list[str] = await self._redis.lrange(self._keys.jobs_dead(), 0, limit - 1)  # type: ignore[assignment]  # decode_responses=True
        return [Job.from_json(t) for t in texts]

    async def backlog(self, *, overdue_ms: int) -> Backlog:
        """The jobs no worker has taken up: queued and never delivered (or all of the stream before
        any worker made the group), and parked retries due ``overdue_ms`` ago or more (a worker
        brings them back: with none running they stay). Entries delivered and held are another
        matter (``XPENDING``)."""
        stream = self._keys.jobs()
        try:
            groups: list[dict[str, Any]] = await self._redis.xinfo_groups(stream)
        except ResponseError:  # no stream yet: nothing was ever queued
            groups = []
        group = next((g for g in groups if g.get("name") == self._keys.jobs_group()), None)
        # Acknowledged entries are deleted (ack): the stream holds the held ones and the waiting.
        start = "-" if group is None else f"({group['last-delivered-id']}"
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(stream)
            pipe.xrange(stream, min=start, max="+", count=1)
            pipe.zcount(self._keys.jobs_delayed(), "-inf", self._clock.now_ms() - overdue_ms)
            length, first, overdue = await pipe.execute()
        held = 0 if group is None else int(group.get("pending") or 0)
        oldest = int(str(first[0][0]).split("-", 1)[0]) if first else None
        return Backlog(waiting=max(int(length) - held, 0), oldest_ms=oldest, overdue=int(overdue))

    async def workers(self) -> dict[str, int]:
        """Every worker known (consumer -> when it was last heard from, unix ms; ``heard_from``):
        a live worker is heard from at each claim, every second or so."""
        heard: dict[str, str] = await self._redis.hgetall(self._keys.jobs_alive())  # type: ignore[assignment]  # decode_responses=True
        return {consumer: int(at) for consumer, at in heard.items()}

    async def counts(self) -> dict[str, int]:
        """Queue depth figures for operators."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._keys.jobs())
            pipe.zcard(self._keys.jobs_delayed())
            pipe.llen(self._keys.jobs_dead())
            queued, delayed, dead = await pipe.execute()
        return {"queued": int(queued), "delayed": int(delayed), "dead": int(dead)}
