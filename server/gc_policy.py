"""How long the garbage collector holds the event loop: watched, and said in the log.

A collection runs inside whatever allocation triggered it, in one step of the event loop, and
walks every object of the generations it collects: over the few hundred thousand objects of
10,000 connections a full collection took 150-280 ms, during which the node answered nothing,
not even ``/healthz`` (issue 20, finding 3). Such a pause is invisible from outside the
process (a slow request of its own), so :class:`PauseWatch` times every collection and logs,
as a warning, each one that held the loop for ``SESSIONHUB_GC_PAUSE_LOG_MS`` or longer: its
generation, its length (``duration_ms`` in JSON lines), the CPU time it took (less than its
length when the process waited for a core meanwhile: a loaded host) and how many objects it
freed.
``bench/soak_mass_disconnect.py`` reads these lines for its longest pause per phase.

The collector's thresholds and the freeze of the start-up heap are in ``server.process``.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class PauseWatch:
    """Times each garbage collection (``gc.callbacks``) and logs those of ``log_over_ms`` or more.

    ``longest_ms`` and ``collections`` are per generation, since the watch was installed.
    """

    def __init__(self, log_over_ms: float) -> None:
        self.log_over_ms = log_over_ms
        self.longest_ms = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        self._started = 0.0
        self._started_cpu = 0.0

    def install(self) -> PauseWatch:
        """Start timing collections (once per watch)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def uninstall(self) -> None:
        """Stop timing collections."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # Runs inside the collection, before and after it: kept to a clock read, except for
        # a collection long enough to be said.
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
            return
        took_ms = (time.perf_counter() - self._started) * 1000
        generation = int(info.get("generation", 2))
        self.collections[generation] += 1
        if took_ms > self.longest_ms[generation]:
            self.longest_ms[generation] = took_ms
        if took_ms >= self.log_over_ms:
            log.warning(
                "a generation %d garbage collection held the event loop %.0f ms (%.0f ms of CPU; %d objects freed)",
                generation,
                took_ms,
                (time.thread_time() - self._started_cpu) * 1000,
                int(info.get("collected", 0)),
                extra={"duration_ms": round(took_ms, 1)},
            )


def watch_pauses(log_over_ms: float) -> PauseWatch | None:
    """Log every collection that holds the loop ``log_over_ms`` or longer (0: watch nothing)."""
    if log_over_ms <= 0:
        return None
    return PauseWatch(log_over_ms).install()
