"""The job runner: claims jobs, runs their processor, acknowledges, retries, dead-letters.

Every outcome is published to the job's session as a ``job_result`` event, so a page shows
"processing", "retrying" and "failed" as they happen.
"""

from __future__ import annotations

import asyncio
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
        consumer: str | None = None,
    ) -> None:
        self._s = services
        self._jobs = services.jobs
        self._processors = processors
        self._max_attempts = max_attempts
        self._backoff_base_ms = backoff_base_ms
        self._visibility_ms = visibility_ms
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
            result = await processor(self._s, job)
        except Exception as exc:  # any processor failure is a failed attempt
            await self._failed(delivery, exc)
            return
        await self._jobs.ack(delivery)
        await self._publish(delivery, "succeeded", attempts=job.attempts + 1, result=result)

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
