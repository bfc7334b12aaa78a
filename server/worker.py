"""The job runner: claims jobs, runs their processor, acknowledges, retries, dead-letters.

A processor runs under a time limit (``timeout_s``, counted from its start, then from each of
its progress steps, ``jobs.processors.report_progress``: past it, it is cancelled and the attempt
fails and retries like any other failure). While a batch is in hand, a heartbeat extends the
claim of every job of it not finished yet (the one running and those waiting their turn) every
third of the visibility timeout, so a job that is slow but alive is never reclaimed and run a
second time by another worker. Should a claim be lost anyway (a heartbeat blocked for longer
than the visibility timeout), this worker drops the job: the one that took it decides.

Every outcome is published to the job's session as a ``job_result`` event, so a page shows
"processing", "retrying" and "failed" as they happen.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
import contextlib
import contextvars
import logging
import os
import socket
import time
from dataclasses import replace
from typing import Any

from handlers.context import Services
from jobs.failures import Declined, RetryLater
from jobs.processors import PROGRESSED, SIDE_BY_SIDE, TIME_LEFT, PermanentJobError, Processor, SessionGone
from protocol.errors import CodedError, ErrorCode
from protocol.events import JOB_RESULT
from storage.failures import REDIS_AWAY
from storage.jobs import Delivery, JobQueue
from storage.voice.repository import KEEP_LAST_JOB

log = logging.getLogger(__name__)

DEFAULT_JOB_TIMEOUT_S = 300.0
# A job failed by a store that is away is tried again at most this far apart, and given up (dead-
# lettered) only past the attempts' limit once it is this old (Worker._failed).
OUTAGE_RETRY_MAX_MS = 5 * 60 * 1000
OUTAGE_GIVE_UP_MS = 24 * 3600 * 1000
# How long a worker waits, at its start or its stop, to forget the job group's idle consumers.
RETIRE_WAIT_S = 2.0
# How long a stopping worker waits to take back the run of the job it was running.
UNSTART_WAIT_S = 1.0
# A reclaimed job's run counts as a death of its worker once that worker has not been heard from
# for this long (and twice the visibility timeout), while the reclaiming worker has had Redis all
# that time (Worker._deaths).
DEATH_SILENCE_MIN_MS = 30_000


class JobTimeout(Exception):
    """The processor ran longer than the per-job time limit and was cancelled."""


class ClaimLost(Exception):
    """Another worker took the job over (our heartbeat came too late): it is theirs now."""


class _Leases:
    """The claims of one batch, kept alive by :meth:`keep` until each job is released."""

    def __init__(self, jobs: JobQueue, consumer: str, deliveries: list[Delivery], interval_s: float) -> None:
        self._jobs = jobs
        self._consumer = consumer
        self._interval_s = interval_s
        self._held = {d.entry_id: d for d in deliveries}
        self._lost = {d.entry_id: asyncio.Event() for d in deliveries}

    def lost(self, delivery: Delivery) -> asyncio.Event:
        """Set when another worker has taken ``delivery`` over."""
        return self._lost[delivery.entry_id]

    def release(self, delivery: Delivery) -> None:
        """Stop extending ``delivery`` (its outcome is about to be stored)."""
        self._held.pop(delivery.entry_id, None)

    async def keep(self) -> None:
        """Extend every held claim each interval, until cancelled."""
        while self._held:
            await asyncio.sleep(self._interval_s)
            try:
                await self._jobs.heard_from(self._consumer)  # alive: its runs are no deaths
            except Exception as exc:
                log.warning("worker %s heartbeat failed: %s", self._consumer, exc)
            for delivery in list(self._held.values()):
                try:
                    still_ours = await self._jobs.extend(self._consumer, delivery)
                except Exception as exc:  # a Redis blip: the job goes on, the next beat may get through
                    log.warning("job %s heartbeat failed: %s", delivery.job.job_id, exc)
                    continue
                if not still_ours and delivery.entry_id in self._held:  # not released meanwhile
                    self.release(delivery)
                    self._lost[delivery.entry_id].set()


class Worker:
    """One consumer of the job group."""

    def __init__(
        self,
        *,
        services: Services,
        processors: dict[str, Processor],
        max_attempts: int,
        backoff_base_ms: int,
        visibility_ms: int,
        timeout_s: float = DEFAULT_JOB_TIMEOUT_S,
        consumer: str | None = None,
        death_silence_ms: int | None = None,
    ) -> None:
        self._s = services
        self._jobs = services.jobs
        self._processors = processors
        self._max_attempts = max_attempts
        self._backoff_base_ms = backoff_base_ms
        self._visibility_ms = visibility_ms
        self._timeout_s = timeout_s
        # A third of the visibility timeout: two heartbeats may be late before a reclaim is possible.
        self._heartbeat_s = max(visibility_ms / 3, 10) / 1000
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        # A run's worker silent this long is dead: a live one is heard from every heartbeat.
        self._death_silence_ms = death_silence_ms or max(2 * visibility_ms, DEATH_SILENCE_MIN_MS)
        # Since when this worker has reached Redis without a failure (monotonic s; None: it has not
        # since its last failure). Only a worker that has heard from Redis all through a silence
        # may call it a death: one just back from an outage finds every live worker silent too.
        self._reachable_since: float | None = time.monotonic()

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000) -> None:
        """Process jobs until ``stop`` is set; Redis outages are waited out.

        The consumer group is made in the loop, like every other call: a worker that starts while
        the job queue's shard fails over (a ``serve`` comes up then, not ready) waits for it;
        made before the loop, its failure ended the worker for good, the process running on.
        """
        grouped = False
        backoff_s = 0.1
        me = asyncio.current_task()
        try:
            # A cancellation a library call swallowed (a connection closed under it, turned into
            # its own error) still ends the loop: the task says it is being cancelled.
            while not stop.is_set() and not (me is not None and me.cancelling()):
                try:
                    if not grouped:
                        await self._jobs.ensure_group()
                        grouped = True
                        await self._retire(None)  # the consumers of processes killed long ago
                    await self.run_once(block_ms=block_ms)
                    backoff_s = 0.1
                    if self._reachable_since is None:
                        self._reachable_since = time.monotonic()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep the worker alive through outages and bugs
                    self._reachable_since = None
                    self._s.metrics.redis_error("worker", exc)
                    log.warning("worker loop error: %s", exc)
                    await asyncio.sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, 5.0)
        finally:
            # Stopping, also when cancelled (`sessionhub worker` on SIGTERM cancels its run, to take
            # back a job it runs): this process's consumer and its alive mark go with it. Left,
            # the mark counted a stopped worker as running for a minute (audit "verify47": the
            # jobs_waiting alert said "too few workers" with none running).
            if grouped:
                await self._retire(self.consumer)

    async def _retire(self, consumer: str | None) -> None:
        """Forget the group's idle consumers (``JobQueue.retire``): bounded, and never in the
        way of a start or a stop (a failure leaves them to the next worker)."""
        try:
            await asyncio.wait_for(self._jobs.retire(consumer), RETIRE_WAIT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("worker: the job group's idle consumers were not forgotten: %s", exc)

    async def run_once(self, *, block_ms: int = 0, count: int = 10) -> int:
        """Claim and process one batch; returns how many jobs were handled."""
        deliveries = await self._jobs.claim(
            self.consumer, count=count, block_ms=block_ms, visibility_ms=self._visibility_ms
        )
        if not deliveries:
            return 0
        leases = _Leases(self._jobs, self.consumer, deliveries, self._heartbeat_s)
        heartbeat = asyncio.create_task(leases.keep())
        # Jobs that wait on the network run beside the others (SIDE_BY_SIDE), the rest one after
        # another; the batch ends when all of them have.
        beside = [
            asyncio.create_task(self._handle(delivery, leases))
            for delivery in deliveries
            if delivery.job.type in SIDE_BY_SIDE
        ]
        try:
            for delivery in deliveries:
                if delivery.job.type not in SIDE_BY_SIDE:
                    await self._handle(delivery, leases)
            if beside:
                await asyncio.gather(*beside)
        finally:
            for task in beside:
                task.cancel()  # stopping: left to another worker, as a job run in line is
            await asyncio.gather(*beside, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        return len(deliveries)

    async def _handle(self, delivery: Delivery, leases: _Leases) -> None:
        job = delivery.job
        processor = self._processors.get(job.type)
        if delivery.reclaimed and await self._buried_as_deadly(delivery, leases):
            return
        try:
            if processor is None:
                raise PermanentJobError(f"no processor for job type {job.type!r}")
            result = await self._running(processor, delivery, leases.lost(delivery))
        except ClaimLost:
            log.warning("job %s (%s) was reclaimed by another worker; dropped here", job.job_id, job.type)
            return  # neither ack nor retry: the worker that holds it now decides
        except RetryLater as exc:
            # Not yet (a service asked to wait): parked for its delay, no failed attempt, and said
            # to be waiting, not done.
            leases.release(delivery)
            payload = dict(exc.payload) if exc.payload is not None else job.payload
            parked = replace(job, payload=payload, last_error=str(exc)[:500])
            await self._jobs.park(delivery, parked, delay_ms=exc.delay_ms)
            self._s.metrics.jobs_retried.inc()
            log.info("job %s (%s) runs again in %d ms: %s", job.job_id, job.type, exc.delay_ms, exc)
            said = str(exc)
            await self._publish(delivery, "retrying", attempts=job.attempts + 1, error=said, retry_in_ms=exc.delay_ms)
            return
        except Declined as exc:
            # The person's input cannot be done (their file, their quota): said to the session,
            # and done with; nothing for the operator's dead letters.
            leases.release(delivery)
            await self._jobs.ack(delivery)
            self._s.metrics.jobs_declined.inc()
            log.info("job %s (%s) declined: %s", job.job_id, job.type, exc)
            await self._publish(delivery, "failed", attempts=job.attempts + 1, error=str(exc))
            return
        except SessionGone:
            # Deleted since it was queued: done with, and no event (the session's log is gone).
            leases.release(delivery)
            await self._jobs.ack(delivery)
            self._s.metrics.jobs_dropped.inc()
            log.info("job %s (%s) dropped: its session %s was deleted", job.job_id, job.type, job.session_id)
            return
        except Exception as exc:  # any processor failure is a failed attempt
            leases.release(delivery)
            await self._failed(delivery, exc)
            return
        leases.release(delivery)
        await self._jobs.ack(delivery)
        await self._publish(delivery, "succeeded", attempts=job.attempts + 1, result=result)

    def reachable_for_ms(self) -> float:
        """How long this worker has reached Redis without a failure, ms (0 after a failure, until
        it reaches it again)."""
        since = self._reachable_since
        return 0.0 if since is None else (time.monotonic() - since) * 1000

    async def _buried_as_deadly(self, delivery: Delivery, leases: _Leases) -> bool:
        """Dead-letter, unrun, a job whose worker died during ``max_attempts`` of its runs: run
        again, it takes down worker after worker (a crash of the process, memory run out), and
        with them every other job. Only deaths count, not a live worker's lost claim nor a Redis
        outage (JobQueue.deaths); and only a worker that has reached Redis all through the
        silence that makes a death may count them. True when it was buried."""
        if self.reachable_for_ms() < self._death_silence_ms:
            return False
        deaths = await self._jobs.deaths(delivery, silent_ms=self._death_silence_ms, besides=self.consumer)
        if deaths < self._max_attempts:
            return False
        leases.release(delivery)
        job = delivery.job
        error = f"its worker stopped (killed, or out of memory) during each of {deaths} runs: not run again"
        buried = await self._jobs.bury(delivery, error=error, ran=False)
        self._s.metrics.jobs_dead.inc()
        log.error("job %s (%s) dead-lettered unrun: %s", job.job_id, job.type, error)
        await self._publish(delivery, "failed", attempts=buried.attempts, error=error)
        return True

    async def _running(self, processor: Processor, delivery: Delivery, lost: asyncio.Event) -> dict[str, Any]:
        """:meth:`_run`, counted in the running-jobs gauge while it runs."""
        self._s.metrics.jobs_running.inc()
        try:
            return await self._run(processor, delivery, lost)
        finally:
            self._s.metrics.jobs_running.dec()

    async def _run(self, processor: Processor, delivery: Delivery, lost: asyncio.Event) -> dict[str, Any]:
        """The processor's result, within the time limit, unless the claim is lost first."""
        if lost.is_set():  # taken over while it waited its turn in the batch
            raise ClaimLost
        # Before the processor reads anything: a request coming after this queues a run of its own.
        await self._jobs.started(delivery, self.consumer)
        try:
            return await self._timed(processor, delivery, lost)
        except asyncio.CancelledError:
            # The worker is stopping (SIGTERM, a deploy): the job is left to another worker, and
            # this run is not one its job cut short. Counted, a long job caught by a few deploys
            # used up its attempts, and failing once more then was dead-lettered for good.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._jobs.unstarted(delivery, self.consumer), UNSTART_WAIT_S)
            raise

    async def _timed(self, processor: Processor, delivery: Delivery, lost: asyncio.Event) -> dict[str, Any]:
        """The processor's run, cut at the time limit (counted from its last progress step)."""
        loop = asyncio.get_running_loop()
        # The time limit counts from the job's start, then from its last progress step: a whole
        # job of many steps (a long recording transcribed chunk by chunk) was cut at the limit
        # while getting on, every attempt, and dead-lettered half done (audit "botflow").
        deadline = loop.time() + self._timeout_s

        def progressed() -> None:
            nonlocal deadline
            deadline = loop.time() + self._timeout_s

        context = contextvars.copy_context()
        context.run(PROGRESSED.set, progressed)
        context.run(TIME_LEFT.set, lambda: deadline - loop.time())

        async def processed() -> dict[str, Any]:
            return await processor(self._s, delivery.job)

        work: asyncio.Future[dict[str, Any]] = loop.create_task(processed(), context=context)
        taken: asyncio.Future[bool] = asyncio.ensure_future(lost.wait())
        try:
            racers: list[asyncio.Future[Any]] = [work, taken]
            while True:
                left = deadline - loop.time()
                done, _ = await asyncio.wait(racers, timeout=max(left, 0), return_when=FIRST_COMPLETED)
                if work in done:
                    return work.result()
                if taken in done:
                    raise ClaimLost
                if deadline <= loop.time():
                    break
            raise JobTimeout(
                f"the processor ran longer than {self._timeout_s:g} s without a progress step and was cancelled"
            )
        finally:
            work.cancel()
            taken.cancel()
            await asyncio.gather(work, taken, return_exceptions=True)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"  # the operator's: the log and the dead letter
        said = _said(exc, error)  # the session's subscribers'
        attempts = delivery.job.attempts + 1
        # A store away (the blob store, Redis, a disk) is not the job's fault: its attempts go on
        # past the limit, further and further apart, until the job is OUTAGE_GIVE_UP_MS old. Five
        # attempts in 15 s dead-lettered a Done's processing for good in an S3 outage of 15 s
        # (audit "s3field"), and nothing runs a dead letter again.
        outage = _outage(exc) and self._s.clock.now_ms() - delivery.job.enqueued_at < OUTAGE_GIVE_UP_MS
        if isinstance(exc, PermanentJobError) or (attempts >= self._max_attempts and not outage):
            await self._jobs.bury(delivery, error=error)
            self._s.metrics.jobs_dead.inc()
            job = delivery.job
            log.warning("job %s (%s) dead-lettered after %d attempts: %s", job.job_id, job.type, attempts, error)
            await self._publish(delivery, "failed", attempts=attempts, error=said)
            return
        delay_ms = self._backoff_base_ms * 2 ** min(attempts - 1, 30)
        if outage:
            delay_ms = min(delay_ms, OUTAGE_RETRY_MAX_MS)
        await self._jobs.retry_later(delivery, delay_ms=delay_ms, error=error)
        self._s.metrics.jobs_retried.inc()
        await self._publish(delivery, "retrying", attempts=attempts, error=said, retry_in_ms=delay_ms)

    async def _publish(self, delivery: Delivery, status: str, **fields: Any) -> None:
        job = delivery.job
        data = {"job_id": job.job_id, "job_type": job.type, "status": status, **fields}
        with contextlib.suppress(CodedError):  # the session is gone; nobody is left to tell
            await self._s.log.append_kept(
                self._s.scripts.append_kept, job.session_id, JOB_RESULT, data, **KEEP_LAST_JOB
            )


# What a session's subscribers are told of a failure whose words are not meant for them: any
# exception of a processor, whose text may name paths, hosts or a plugged-in processor's
# internals (audit "jobsreal": "RuntimeError: …" went to every tab watching the session).
UNEXPECTED_FAILURE = "the processing failed on the server (its operator's log says why)"


def _said(exc: Exception, error: str) -> str:
    """The words a failed attempt's ``job_result`` carries: the failure's own where they are
    written for people (a time limit, a store away, a processor's deliberate refusal), else
    :data:`UNEXPECTED_FAILURE`. The whole text stays in the log and the dead letter."""
    if isinstance(exc, JobTimeout | PermanentJobError | CodedError):
        return error
    if isinstance(exc, REDIS_AWAY):
        return "the server could not reach its storage"
    return UNEXPECTED_FAILURE


def _outage(exc: Exception) -> bool:
    """Whether ``exc`` says a store is away for now (``unavailable``, Redis or the disk failing),
    not that the job cannot be done."""
    if isinstance(exc, CodedError):
        return exc.code is ErrorCode.UNAVAILABLE
    return isinstance(exc, REDIS_AWAY)
