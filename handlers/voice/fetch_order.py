"""What the webhook hands the ``TELEGRAM_FETCH`` job (jobs/telegram_fetch.py): the order to fetch
a voice note's or an audio's file from Telegram into its session, queued once per material."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from auth.claims import Claims
from handlers.context import Services
from handlers.voice.actions import announce_queued
from storage.jobs import Job

TELEGRAM_FETCH = "TELEGRAM_FETCH"
_FETCH_JOBS = uuid.UUID("0d6f2a4e-5c1b-4f7e-9b0a-3e8c7d2f1a65")


def fetch_job_id(session_id: str, material_id: str) -> str:
    """The one job id of a material's fetch: a second queueing of it (a redelivered update) is none."""
    return str(uuid.uuid5(_FETCH_JOBS, f"{session_id}|{material_id}"))


@dataclass(frozen=True, slots=True)
class FetchOrder:
    """What the webhook knew of the file (the job's payload)."""

    material_id: str
    file_id: str
    file_unique_id: str
    added_at: int  # the material's, ms: the chunk's end, so every run stores the same chunk
    duration_s: float  # Telegram's figure, for a container whose duration is not read
    index: int = -1  # where the material is in the session's list (a hint)
    attempt: int = 0  # tries made before this one

    @classmethod
    def of(cls, payload: dict[str, Any]) -> FetchOrder:
        """From a job's payload (``ValueError`` for a malformed one: a bug of its maker)."""
        try:
            return cls(
                material_id=str(payload["material_id"]),
                file_id=str(payload["file_id"]),
                file_unique_id=str(payload.get("file_unique_id", "")),
                added_at=int(payload["added_at"]),
                duration_s=float(payload.get("duration_s") or 0),
                index=int(payload.get("index", -1)),
                attempt=int(payload.get("attempt", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a {TELEGRAM_FETCH} job without {exc}") from None

    def payload(self) -> dict[str, Any]:
        """The job's payload."""
        return {
            "material_id": self.material_id,
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "added_at": self.added_at,
            "duration_s": self.duration_s,
            "index": self.index,
            "attempt": self.attempt,
        }


async def queue_fetch(services: Services, claims: Claims, session_id: str, order: FetchOrder) -> bool:
    """Queue the fetch of ``order``'s file into ``session_id`` once (``JobQueue.enqueue_once``);
    True when it was queued now."""
    job = Job(
        type=TELEGRAM_FETCH,
        session_id=session_id,
        performer_id=claims.sub,
        telegram_user_id=claims.telegram_user_id,
        payload=order.payload(),
        job_id=fetch_job_id(session_id, order.material_id),
    )
    queued = await services.jobs.enqueue_once(job)
    if queued:
        await announce_queued(services, job)
    return queued
