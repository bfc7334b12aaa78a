"""Blocking boto3 calls run for the event loop: on a few threads of their own, each with a deadline.

boto3 blocks, so a call needs a thread. On the loop's default executor (``asyncio.to_thread``:
6 threads on a 2-core machine) six calls held by a bucket that hangs took every thread, and the
pages and static files the node reads in that executor stopped answering with them, for the
~2 minutes boto3 took to give up (audit s3field, finding 1). So S3 has :data:`S3_THREADS` threads
of its own; a call that finds them all taken is refused ``unavailable`` at once rather than
queued behind calls that may never end; and every call is bounded twice: by botocore's own
timeouts and retries (:func:`client_config`, so that the thread itself comes back), and by
:data:`S3_CALL_DEADLINE_S` on the awaiting side (a call past it is answered ``unavailable``
while its thread finishes on its own).

A bucket that refuses (no such bucket, credentials refused) or cannot be reached is a fault of
the world, not of the code: the call is answered ``unavailable`` with a retry hint, like one
that ran out of time, and logged as one line (repeats counted), never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from protocol.errors import CodedError, ErrorCode

T = TypeVar("T")

log = logging.getLogger(__name__)

# How many boto3 calls run at once per process (uploads, plays, transcription downloads, deletions).
S3_THREADS = 8
# The longest a caller waits for one call; botocore's bounds below end the thread itself by then:
# 2 attempts of at most 5 s to connect and 10 s per read or write, and a back-off under a second.
S3_CALL_DEADLINE_S = 30.0
S3_CONNECT_TIMEOUT_S = 5
S3_READ_TIMEOUT_S = 10
S3_MAX_ATTEMPTS = 2
# What a refusal tells the client to wait: long enough for a held call to have ended or failed.
S3_RETRY_AFTER_S = 5
# The ``reason`` of an ``unavailable`` refusal for the bucket (PROTOCOL.md, error codes).
BLOB_STORE = "blob_store"
# A failing bucket fails every call alike: one line for the first, then a count at most this often.
SAY_EVERY_S = 60.0


def client_config() -> Any:
    """botocore's timeouts and retries for the store's client (one call ends within the deadline)."""
    from botocore.config import Config

    return Config(
        retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        connect_timeout=S3_CONNECT_TIMEOUT_S,
        read_timeout=S3_READ_TIMEOUT_S,
    )


def bucket_faults() -> tuple[type[BaseException], ...]:
    """What boto3 raises when the bucket refuses or cannot be reached (not a bug of ours)."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError
    from s3transfer.exceptions import RetriesExceededError

    return (BotoCoreError, ClientError, Boto3Error, RetriesExceededError)


def describe(exc: BaseException) -> str:
    """One line for a bucket fault: the S3 error code where there is one, else boto3's words."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"{error.get('Code', '')} {error.get('Message', '')} (HTTP {status})".strip()
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def busy() -> CodedError:
    """The refusal of a call that found every thread taken, or outlasted its deadline."""
    return CodedError(
        ErrorCode.UNAVAILABLE,
        "the audio store is busy or does not answer; try again",
        reason=BLOB_STORE,
        retry_after_s=S3_RETRY_AFTER_S,
    )


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Take the outcome of a call nobody waits for any more (asyncio would log it as lost)."""
    if not future.cancelled():
        future.exception()


class S3Calls:
    """A bounded pool of threads for blocking S3 calls, each awaited for at most a deadline."""

    def __init__(self, *, threads: int = S3_THREADS, deadline_s: float = S3_CALL_DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self._faults = bucket_faults()
        self._said_at_s = -SAY_EVERY_S
        self._unsaid = 0
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sessionhub-s3")
        # Taken on the loop, given back by the thread when the call really ends (not when its
        # caller stops waiting): a call past its deadline still holds its thread.
        self._free = threading.BoundedSemaphore(threads)
        # Why the last call failed, while none has gone through since (the operator's alert):
        # None when the last call went through, or before any.
        self.trouble: str | None = None

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)`` on a thread of the pool; ``unavailable`` when none is free,
        the call outlasts the deadline, or the bucket refuses it or cannot be reached."""
        return await self.run_within(self.deadline_s, call, *args, **kwargs)

    async def run_within(self, deadline_s: float, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`run` with its own deadline (a start-up check waits less than an upload)."""
        try:
            result = await self._run(deadline_s, call, args, kwargs)
        except TimeoutError:
            self._say(f"no answer within {deadline_s:g} s")
            raise busy() from None
        except self._faults as exc:
            self._say(describe(exc))
            raise busy() from None
        self.trouble = None
        return result

    async def _run(self, deadline_s: float, call: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        if not self._free.acquire(blocking=False):
            raise busy()
        try:
            future = asyncio.get_running_loop().run_in_executor(self._pool, self._release_after, call, args, kwargs)
        except BaseException:  # the pool is shut down: nothing will give the thread back
            self._free.release()
            raise
        # Shielded: a caller that stops waiting (its deadline, its request cut) must not cancel
        # a call still queued for a thread, whose slot only the thread gives back.
        future.add_done_callback(_retrieved)
        return await asyncio.wait_for(asyncio.shield(future), deadline_s)

    async def probe(
        self, deadline_s: float, call: Callable[[], object], explain: Callable[[BaseException], str] = lambda exc: ""
    ) -> str | None:
        """Run ``call``: None when it went through, else why not, in words (``explain`` of the
        bucket's fault, else boto3's). Nothing is logged: the caller says it once."""
        try:
            await self._run(deadline_s, call, (), {})
        except TimeoutError:
            self.trouble = f"no answer within {deadline_s:g} s"
        except CodedError:
            return "every thread of the store is taken"
        except self._faults as exc:
            self.trouble = explain(exc) or describe(exc)
        else:
            self.trouble = None
        return self.trouble

    def _release_after(self, call: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            return call(*args, **kwargs)
        finally:
            self._free.release()

    def _say(self, what: str) -> None:
        self.trouble = what
        now_s = time.monotonic()
        if now_s - self._said_at_s < SAY_EVERY_S:
            self._unsaid += 1
            return
        more = f" ({self._unsaid} more since the last line)" if self._unsaid else ""
        log.warning("the S3 audio bucket failed a call, answered 503: %s%s", what, more)
        self._said_at_s, self._unsaid = now_s, 0

    def close(self) -> None:
        """Stop taking calls; threads still in a call end with it (the loop does not wait)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
