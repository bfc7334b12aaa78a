"""The job runner: claims jobs, runs their processor, acknowledges, retries, dead-letters.

A processor runs under a time limit (``timeout_s``: past it, it is cancelled and the attempt
fails and retries like any other failure) and, while it runs, a heartbeat extends the job's claim
every third of the visibility timeout, so a job that is slow but alive is never reclaimed and run
a second time by another worker.

Every outcome is published to the job's session as a ``job_result`` event, so a page shows
"processing", "retrying" and "failed" as they happen.
"""

from __future__ import annotations

import asyncio
from asyncio import FIRST_COMPLETED
import contextlib
import logging
import os
import socket
from typing import Any

from handlers.context import Services
from jobs.processors import PermanentJobError, Processor
from protocol.errors import CodedError
from protocol.events import JOB_RESULT
from storage.jobs import Delivery

log = logging.getLogger(__name__)

DEFAULT_JOB_TIMEOUT_S = 300.0


class JobTimeout(Exception):
    """The processor ran longer than the per-job time limit and was cancelled."""


class ClaimLost(Exception):
    """Another worker took the job over (our heartbeat came too late): it is theirs now."""


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

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000) -> None:
        """Process jobs until ``stop`` is set; Redis outages are waited out."""
        await self._jobs.ensure_group()
        backoff_s = 0.1
        while not stop.is_set():
            try:
                await self.run_once(block_ms=block_ms)
                backoff_s = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the worker alive through outages and bugs
                log.warning("worker loop error: %s", exc)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    async def run_once(self, *, block_ms: int = 0, count: int = 10) -> int:
        """Claim and process one batch; returns how many jobs were handled."""
        deliveries = await self._jobs.claim(
            self.consumer, count=count, block_ms=block_ms, visibility_ms=self._visibility_ms
        )
        for delivery in deliveries:
            await self._handle(delivery)
        return len(deliveries)

    async def _handle(self, delivery: Delivery) -> None:
        job = delivery.job
        processor = self._processors.get(job.type)
        try:
            if processor is None:
                raise PermanentJobError(f"no processor for job type {job.type!r}")
            result = await self._run(processor, delivery)
        except ClaimLost:
            log.warning("job %s (%s) was reclaimed by another worker while it ran here", job.job_id, job.type)
            return  # neither ack nor retry: the worker that holds it now decides
        except Exception as exc:  # any processor failure is a failed attempt
            await self._failed(delivery, exc)
            return
        await self._jobs.ack(delivery)
        await self._publish(delivery, "succeeded", attempts=job.attempts + 1, result=result)

    async def _run(self, processor: Processor, delivery: Delivery) -> dict[str, Any]:
        """The processor's result, within the time limit, with the claim extended meanwhile."""
        work: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(processor(self._s, delivery.job))
        heartbeat: asyncio.Future[None] = asyncio.ensure_future(self._heartbeat(delivery))
        try:
            racers: list[asyncio.Future[Any]] = [work, heartbeat]
            done, _ = await asyncio.wait(racers, timeout=self._timeout_s, return_when=FIRST_COMPLETED)
            if work in done:
                return work.result()
            if heartbeat in done:
                raise ClaimLost
            raise JobTimeout(f"the processor ran longer than {self._timeout_s:g} s and was cancelled")
        finally:
            work.cancel()
            heartbeat.cancel()
            await asyncio.gather(work, heartbeat, return_exceptions=True)

    async def _heartbeat(self, delivery: Delivery) -> None:
        """Extend the claim until cancelled; returns only when the job is no longer ours."""
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                if not await self._jobs.extend(self.consumer, delivery):
                    return
            except Exception as exc:  # a Redis blip: the job goes on, the next beat may get through
                log.warning("job %s heartbeat failed: %s", delivery.job.job_id, exc)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        attempts = delivery.job.attempts + 1
        if isinstance(exc, PermanentJobError) or attempts >= self._max_attempts:
            await self._jobs.bury(delivery, error=error)
            job = delivery.job
            log.warning("job %s (%s) dead-lettered after %d attempts: %s", job.job_id, job.type, attempts, error)
            await self._publish(delivery, "failed", attempts=attempts, error=error)
            return
        delay_ms = self._backoff_base_ms * 2 ** (attempts - 1)
        await self._jobs.retry_later(delivery, delay_ms=delay_ms, error=error)
        await self._publish(delivery, "retrying", attempts=attempts, error=error, retry_in_ms=delay_ms)

    async def _publish(self, delivery: Delivery, status: str, **fields: Any) -> None:
        job = delivery.job
        data = {"job_id": job.job_id, "job_type": job.type, "status": status, **fields}
        with contextlib.suppress(CodedError):  # the session is gone; nobody is left to tell
            await self._s.log.append(self._s.scripts.append, job.session_id, JOB_RESULT, data)
