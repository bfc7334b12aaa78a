"""The dead-letter list as an operator works it: read a page, retry one job, discard one or all.

The list (``Keys.jobs_dead``) is written by ``JobQueue.bury``: ``Job.to_json`` texts, newest
first, the newest ``DEAD_LETTERS_MAX`` kept. An entry is found by its job id here and then named
by its exact text to the script that changes the list (``LREM``): a text no longer there (another
operator's press, the trim of a full list) changes nothing. Each change leaves a mark of how the
job was settled for :data:`SETTLED_MARK_MS`, so a press sent again after its answer was lost is
answered as the first was (``retried`` / ``discarded``, ``again``) instead of queuing twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from redis.asyncio import Redis

from protocol.errors import CodedError, ErrorCode
from storage.clock import Clock
from storage.jobs import DEAD_LETTERS_MAX, JOB_STREAM_MAXLEN, Job
from storage.keys import Keys
from storage.scripts import Explain, checked, plain_script, refused

# How long a settled dead letter's mark answers a repeated press: as long as a press's answer is
# kept for its resends elsewhere (storage.jobs.QUEUED_MARK_MS).
SETTLED_MARK_MS = 24 * 3600 * 1000
# Entries read per round trip while looking for a job id (the list holds up to 10,000).
FIND_BATCH = 500
PAGE_MAX = 100


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered job as an operator sees it (its payload left out: it can be large)."""

    job_id: str
    type: str
    session_id: str
    performer_id: str
    attempts: int
    enqueued_at: int
    last_error: str
    buried_at: int | None = None  # when it was buried (ms); None for one buried by an older release

    @classmethod
    def from_text(cls, text: str) -> DeadLetter:
        """The entry ``text``; a field a job of another release lacks is shown empty, not refused."""
        try:
            fields: dict[str, Any] = json.loads(text)
        except ValueError:
            fields = {}
        if not isinstance(fields, dict):
            fields = {}
        return cls(
            job_id=str(fields.get("job_id", "")),
            type=str(fields.get("type", "")),
            session_id=str(fields.get("session_id", "")),
            performer_id=str(fields.get("performer_id", "")),
            attempts=_whole(fields.get("attempts")),
            enqueued_at=_whole(fields.get("enqueued_at")),
            last_error=str(fields.get("last_error", "")),
        )


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def fingerprint(text: str | None) -> str:
    """What names the list's newest entry to a discard of all (``dead_clear.lua`` reckons it
    alike): the first 16 hex digits of its text's SHA-1; '' for an empty list."""
    return hashlib.sha1(text.encode()).hexdigest()[:16] if text else ""  # a name, no secret


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """A page of the list: ``total`` entries in all, ``next_offset`` None at the end, ``newest``
    the fingerprint of the list's newest entry (whatever the page)."""

    letters: list[DeadLetter]
    total: int
    next_offset: int | None
    newest: str


@dataclass(frozen=True, slots=True)
class Settled:
    """How a retry or a discard went: ``again`` when an earlier press had done it already."""

    job_id: str
    again: bool
    # How the dead letter was settled when ``again`` ("retried" or "discarded"), else "".
    earlier: str = ""
    # The entry settled now (None when ``again``).
    letter: DeadLetter | None = None


def retried_job(text: str, *, now_ms: int) -> Job:
    """The job of dead-letter entry ``text`` as it is queued again: from its first attempt, with no
    last error, the same id, enqueued now (as ``JobQueue.enqueue`` writes a job)."""
    try:
        job = Job.from_json(text)
    except (TypeError, ValueError) as exc:  # a job of another release, fields this one lacks
        raise CodedError(ErrorCode.INVALID_STATE, "this dead letter is no job this release can run") from exc
    return replace(job, attempts=0, last_error="", enqueued_at=now_ms)


class DeadLetters:
    """Reads and settles the dead-letter list (the write side is ``JobQueue.bury``)."""

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._retry = plain_script(redis, "jobs/dead_retry.lua")
        self._discard = plain_script(redis, "jobs/dead_discard.lua")
        self._clear = plain_script(redis, "jobs/dead_clear.lua")

    async def page(self, *, offset: int, limit: int) -> DeadLetterPage:
        """``limit`` (at most :data:`PAGE_MAX`) entries from ``offset``, newest first.

        An offset counts from the newest entry: a job buried between two pages shifts the next
        one by one (an entry shown twice, never one skipped)."""
        limit = max(1, min(limit, PAGE_MAX))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(self._keys.jobs_dead(), offset, offset + limit - 1)
            pipe.llen(self._keys.jobs_dead())
            pipe.lindex(self._keys.jobs_dead(), 0)
            texts, total, head = await pipe.execute()
        letters = [DeadLetter.from_text(text) for text in texts]
        ids = [letter.job_id for letter in letters if letter.job_id]
        buried: Any = await self._redis.zmscore(self._keys.jobs_dead_at(), ids) if ids else []
        when = {job_id: int(score) for job_id, score in zip(ids, buried, strict=True) if score is not None}
        letters = [replace(letter, buried_at=when.get(letter.job_id)) for letter in letters]
        end = offset + len(letters)
        return DeadLetterPage(
            letters=letters,
            total=int(total),
            next_offset=end if end < int(total) else None,
            newest=fingerprint(head),
        )

    async def find(self, job_id: str) -> str:
        """The entry text of ``job_id`` (the newest, should it be there twice), or ''."""
        needle = f'"job_id":{json.dumps(job_id)}'  # Job.to_json's compact separators
        for start in range(0, DEAD_LETTERS_MAX, FIND_BATCH):
            texts: list[str] = await self._redis.lrange(self._keys.jobs_dead(), start, start + FIND_BATCH - 1)  # type: ignore[assignment]  # decode_responses=True
            for text in texts:
                if needle in text and DeadLetter.from_text(text).job_id == job_id:
                    return text
            if len(texts) < FIND_BATCH:
                break
        return ""

    async def retry(self, job_id: str, *, entry: str | None = None) -> Settled:
        """Queue the dead letter ``job_id`` again (``dead_retry.lua``); ``not_found`` when it was
        never in the list, ``conflict`` when it was discarded. ``entry``: its text as
        :meth:`find` read it just before (a full list is 20 reads: not made twice)."""
        entry = await self.find(job_id) if entry is None else entry
        job = retried_job(entry, now_ms=self._clock.now_ms()).to_json() if entry else ""
        keys = [self._keys.jobs_dead(), self._keys.jobs(), self._keys.jobs_dead_settled(job_id)]
        result = await self._retry(keys=keys, args=[entry, job, JOB_STREAM_MAXLEN, SETTLED_MARK_MS])
        _, again = checked(result, _worded(job_id))
        if again:
            return Settled(job_id=job_id, again=True, earlier="retried")
        return Settled(job_id=job_id, again=False, letter=DeadLetter.from_text(entry))

    async def discard(self, job_id: str, *, entry: str | None = None) -> Settled:
        """Drop the dead letter ``job_id`` (``dead_discard.lua``); ``not_found`` when it was never
        in the list (or was settled longer ago than the mark is kept). ``entry``: as for :meth:`retry`."""
        entry = await self.find(job_id) if entry is None else entry
        keys = [self._keys.jobs_dead(), self._keys.jobs_dead_settled(job_id)]
        answer = checked(await self._discard(keys=keys, args=[entry, SETTLED_MARK_MS]), _worded(job_id))
        if answer[1]:
            return Settled(job_id=job_id, again=True, earlier=str(answer[2]))
        return Settled(job_id=job_id, again=False, letter=DeadLetter.from_text(entry))

    async def settled(self, job_id: str) -> str:
        """How the dead letter ``job_id`` was settled lately (``retried``, ``discarded``), or ''."""
        mark: str | None = await self._redis.get(self._keys.jobs_dead_settled(job_id))  # type: ignore[assignment]  # decode_responses=True
        return mark or ""

    async def discard_all(self, *, confirm: int, newest: str = "") -> int:
        """Empty the list when it holds ``confirm`` entries and, with ``newest``, its newest entry
        is the one of that fingerprint (``dead_clear.lua``): the number dropped (0 when it was
        empty already); ``conflict`` with the count and fingerprint now otherwise."""
        result = await self._clear(keys=[self._keys.jobs_dead()], args=[confirm, newest])
        if refused(result):
            checked(result, _recount)
        return int(result)


def _worded(job_id: str) -> Explain:
    def explain(code: ErrorCode, detail: str) -> CodedError | None:
        if code is ErrorCode.NOT_FOUND:
            return CodedError(code, f"no dead letter {job_id}")
        if code is ErrorCode.CONFLICT and detail == "discarded":
            return CodedError(code, f"dead letter {job_id} was discarded: there is nothing to retry")
        return None

    return explain


def _recount(code: ErrorCode, detail: str) -> CodedError | None:
    count, _, newest = detail.partition(" ")
    if code is ErrorCode.CONFLICT and count.isdigit():
        return CodedError(
            code,
            "the dead letters changed since they were listed (another count, or another newest); list them again",
            count=int(count),
            newest=newest,
        )
    return None
