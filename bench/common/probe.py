"""A thread that asks ``GET /healthz`` over a fresh connection at a fixed interval.

The soaks measure "does the node keep answering while it is busy": each probe records when it
was sent, how long the answer took and whether it was a 200, and a soak reads the slowest answer
of a window (:meth:`HealthProbe.take`) or of everything since its last read
(:meth:`HealthProbe.phase`). A fresh connection per probe, because a kept-alive one would skip
the accept queue a connection storm fills.
"""

from __future__ import annotations

import http.client
import threading
import time

from common.figures import percentile_upper


class HealthProbe(threading.Thread):
    """Probes ``path`` on ``port`` every ``interval_s`` until :attr:`stopping` is set."""

    def __init__(self, port: int, *, interval_s: float, timeout_s: float = 30.0, path: str = "/healthz") -> None:
        super().__init__(daemon=True)
        self.port, self.interval_s, self.timeout_s, self.path = port, interval_s, timeout_s, path
        self.stopping = threading.Event()
        self.samples: list[tuple[float, float, bool]] = []  # (sent at, seconds, answered 200)
        self._read = 0  # samples before this index were returned by phase()
        self.lock = threading.Lock()

    def take(self, since: float, until: float = float("inf")) -> tuple[float, int]:
        """The slowest answer and the failed probes among those answered between ``since`` and ``until``."""
        with self.lock:
            samples = [s for s in self.samples if since <= s[0] + s[1] <= until]
        return max((s[1] for s in samples), default=0.0), sum(1 for s in samples if not s[2])

    def phase(self) -> tuple[float, float, int]:
        """The slowest answer, the 99th percentile and the failed probes since the last call."""
        with self.lock:
            window, self._read = self.samples[self._read :], len(self.samples)
        seconds = [s[1] for s in window] or [0.0]
        return max(seconds), percentile_upper(seconds, 0.99), sum(1 for s in window if not s[2])

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            started = time.monotonic()
            ok = False
            try:
                link = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
                link.request("GET", self.path)
                ok = link.getresponse().status == 200
                link.close()
            except OSError:
                pass
            with self.lock:
                self.samples.append((started, time.monotonic() - started, ok))
