"""What reached Redis' pub/sub while a window ran, and how the server's memory moved meanwhile.

A committed event of sessionhub is published inside its script, so it is on Redis' bus before
its ack leaves. Node socket.io's Redis adapter publishes after its local broadcast, through its
client's command queue: when the node's loop is saturated, that queue can fall behind, and the
events it owes the other nodes wait in the node's memory (bench/README.md, ninth round). A
committed-events figure alone does not show that; this probe does.

A thread samples, every ``interval_s``, Redis' count of ``PUBLISH`` calls (``INFO
commandstats``: calls inside scripts count too) and the server's resident memory, on
``time.monotonic()`` -- the generator's window bounds (``t0_s``, ``t1_s``) are on the same clock
(CLOCK_MONOTONIC) -- and :func:`window` reads a window off the samples. Bounded: it stops when
asked, and each sample is one short ``INFO`` over loopback.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from typing import Any

from procstat import rss_kib
from redis import Redis
from redis.exceptions import RedisError

INTERVAL_S = 0.05
TIMEOUT_S = 2.0


def publish_calls(client: Redis) -> int:
    """Redis' ``cmdstat_publish`` calls so far (0 before the first)."""
    stats: dict[str, Any] = client.info("commandstats")
    return int((stats.get("cmdstat_publish") or {}).get("calls", 0))


class PublishProbe:
    """Samples (monotonic s, PUBLISH calls, server RSS KiB) in a thread of its own."""

    def __init__(self, redis_port: int, server_pid: int, *, interval_s: float = INTERVAL_S) -> None:
        self._port = redis_port
        self._pid = server_pid
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.samples: list[tuple[float, int, int]] = []
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="publish-probe", daemon=True)

    def __enter__(self) -> PublishProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT_S + 1)

    def _run(self) -> None:
        client = Redis(host="127.0.0.1", port=self._port, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S)
        try:
            stopping = False
            while not stopping:
                # once more when asked to stop: a window that ended just before the generator
                # left (a fixed-rate one) still has a sample after its end
                stopping = self._stop.wait(self._interval_s) if self.samples else False
                calls = publish_calls(client)
                self.samples.append((time.monotonic(), calls, rss_kib(self._pid)))
        except (RedisError, OSError, RuntimeError) as exc:  # Redis or the server gone: the samples stand
            self.error = repr(exc)
        finally:
            client.close()


def _at(samples: list[tuple[float, int, int]], t: float, field: int) -> float | None:
    """A sampled field at time ``t``, linear between the samples around it (None outside them)."""
    times = [s[0] for s in samples]
    i = bisect_left(times, t)
    if i == 0 or i >= len(samples):
        return None
    (ta, *a), (tb, *b) = samples[i - 1], samples[i]
    share = (t - ta) / (tb - ta) if tb > ta else 0.0
    return a[field] + (b[field] - a[field]) * share


def _span(samples: list[tuple[float, int, int]], t: float) -> float:
    """The time between the two samples around ``t``."""
    i = bisect_left([s[0] for s in samples], t)
    return samples[i][0] - samples[i - 1][0]


def window(samples: list[tuple[float, int, int]], block: dict[str, Any]) -> dict[str, Any]:
    """What the samples say of a generator window: PUBLISH calls within it, per committed event,
    and the server's memory growth over it. Empty when the window lies outside the samples."""
    t0, t1 = block.get("t0_s"), block.get("t1_s")
    if t0 is None or t1 is None:
        return {}
    p0, p1 = _at(samples, t0, 0), _at(samples, t1, 0)
    r0, r1 = _at(samples, t0, 1), _at(samples, t1, 1)
    if p0 is None or p1 is None or r0 is None or r1 is None:
        return {}
    events = block.get("events") or 0
    published = p1 - p0
    return {
        "published": round(published),
        "published_per_event": round(published / events, 3) if events else None,
        # The spans of the samples around the window's two edges: interpolation may misplace the
        # calls made within them (on a busy machine the sampler is late, 0.5 s and more), which
        # over a short window of a few events is a large share of them.
        "edge_spans_s": round(_span(samples, t0) + _span(samples, t1), 3),
        "server_rss_growth_mb": round((r1 - r0) / 1024, 1),
    }
