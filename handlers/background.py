"""What every background loop of the server (heartbeats, sweepers) shares about stopping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from handlers.log_throttle import LogThrottle
from storage.failures import REDIS_AWAY

# How long a stopping loop is waited for before shutdown goes on without it.
STOP_WAIT_S = 5.0


def cancelled(task: asyncio.Task[object] | None = None) -> bool:
    """True once the running task (or ``task``, the loop's own, asked for once) has been asked to
    stop (even if a library swallowed it).

    redis-py may catch the ``CancelledError`` of a task cancelled during a call and return or
    raise something else: a loop checks this between rounds, so that it still stops. A loop
    that goes round once per message passes its task: on Python 3.11 asking asyncio for the
    running task is a ``getpid()`` system call (the bus's listener asked once per event).
    """
    if task is None:
        task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled(exc: BaseException) -> None:
    """Re-raise a cancellation that a library turned into another error.

    A task cancelled in the middle of a Redis call may see the cancellation come back as a
    connection error (redis-py closes the connection under it); a loop that logs such errors and
    goes on would then never stop, and hold the server's shutdown.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


async def rest(delay_s: float) -> None:
    """Sleep ``delay_s`` between a loop's rounds, unless the task was asked to stop meanwhile.

    A cancellation that a library swallowed during the round (see :func:`cancelled`) is not
    delivered again, so a plain sleep after that round ran to its end while shutdown waited for
    the loop: up to ``STOP_WAIT_S`` (the node heartbeat's 5 s) or the whole interval (the
    revocation watch's 2 s), for a server stopped while a round was in a Redis call, as one is
    just after its start.
    """
    if cancelled():
        raise asyncio.CancelledError
    await asyncio.sleep(delay_s)


def for_app_lifetime(app: web.Application, loop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``loop()`` for ``app``'s lifetime: started with it, cancelled as it stops, and waited for
    up to STOP_WAIT_S."""

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=STOP_WAIT_S)

    app.cleanup_ctx.append(lifetime)


async def every(
    interval_s: Callable[[], float],
    step: Callable[[], Awaitable[object]],
    *,
    what: str,
    failed: LogThrottle,
    away: logging.Logger | None,
) -> None:
    """Run ``step`` every ``interval_s()`` seconds until cancelled, whatever a round meets: Redis
    away is one line on ``away`` (None: said elsewhere, e.g. by the bus), any other failure its
    traceback once (``failed``), and the next round comes all the same."""
    while not cancelled():
        try:
            await step()
        except REDIS_AWAY as exc:
            stop_if_cancelled(exc)
            if away is not None:
                away.warning("%s: %s", what, exc)
        except Exception as exc:  # a bug or a client library's own error must not end the loop
            failed.exception(f"{what}: a round failed", exc)
        await rest(interval_s())
