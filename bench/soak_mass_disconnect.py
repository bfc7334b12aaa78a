"""Soak: 10,000 subscribers connect, then all leave at once, twice (issue 20, finding 3).

The load generator (the compiled one when it builds, else bench/lean_client.py) opens N
WebSocket connections, each with the Socket.IO CONNECT and a ``subscribe`` to one session,
holds them, then closes every one in the same instant. Meanwhile a probe asks ``GET /healthz``
every 10 ms. Prints, against their bounds: the slowest ``/healthz`` answer during each
connect-and-disconnect cycle (100 ms), the seconds until the server had closed every
socket (10 s), and the server's RSS before the first cycle and after each: the first cycle
grows the allocator's pools, later cycles reuse them (after the last within 10 MB of after the
second: a disconnect leaves nothing behind; it was +45 MB per cycle).

    .venv/bin/python bench/soak_mass_disconnect.py [--n 10000] [--cycles 3] [--gen c|py]

Bounded: every wait has a deadline; the server and Redis started here are stopped here.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness
import toolchain

HEALTHZ_BOUND_S = 0.100
RELEASE_BOUND_S = 10.0
RSS_GROWTH_BOUND_MB = 10.0
PROBE_TIMEOUT_S = 60.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Probe(threading.Thread):
    """``GET /healthz`` over a fresh connection every 10 ms; the slowest answer since ``reset``."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopping = threading.Event()
        self.samples: list[tuple[float, float, bool]] = []  # (sent at, seconds, answered 200)
        self.lock = threading.Lock()

    def take(self, since: float) -> tuple[float, int]:
        """The slowest answer and the failed probes among those answered after ``since``."""
        with self.lock:
            samples = [s for s in self.samples if s[0] + s[1] >= since]
        return max((s[1] for s in samples), default=0.0), sum(1 for s in samples if not s[2])

    def run(self) -> None:
        while not self.stopping.wait(0.010):
            started = time.monotonic()
            ok = False
            try:
                link = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT_S)
                link.request("GET", "/healthz")
                ok = link.getresponse().status == 200
                link.close()
            except OSError:
                pass
            with self.lock:
                self.samples.append((started, time.monotonic() - started, ok))


def generator_options(n: int, hold_s: float) -> list[str]:
    """Connect and subscribe, hold, then close every connection at once."""
    return [
        "--n", str(n), "--concurrency", "500", "--sat-s", "0", "--fixed-s", "0",
        "--hold-s", str(hold_s), "--handshake-timeout-s", "60",
    ]  # fmt: skip


def wait_released(pid: int, baseline: int) -> float:
    """Seconds until the server holds no more descriptors than before the cycle (bounded)."""
    started = time.monotonic()
    while open_fds(pid) > baseline + 5 and time.monotonic() - started < 60:
        time.sleep(0.05)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--gen", choices=harness.GENERATORS, default="c")
    args = parser.parse_args()
    generator = args.gen
    if generator == "c" and not toolchain.build_cgen().ok:
        generator = "py"
    ok = True
    with tempfile.TemporaryDirectory(prefix="sessionhub-soak-disconnect-") as tmp:
        workdir = Path(tmp)
        redis, url = harness.start_redis(workdir)
        server = None
        probe = None
        try:
            server = harness.start_sessionhub(workdir, url)
            pid = server.child.pid
            probe = Probe(server.port)
            probe.start()
            time.sleep(0.5)
            baseline_fds = open_fds(pid)
            before = rss_mb(pid)
            print(f"server RSS before {before:.0f} MB; {args.n} clients per cycle, generator {generator}")
            after_each: list[float] = []
            for cycle in range(1, args.cycles + 1):
                began = time.monotonic()
                budget_s = 60 + args.n / 100
                result = harness.run_generator(
                    server, redis, generator_options(args.n, 2.0), timeout_s=budget_s, generator=generator
                )
                # The generator closes every connection at once just before it exits, after a
                # 2 s hold: probes sent from 1 s before its exit on are the disconnect's.
                dropped = time.monotonic() - 1.0
                released = wait_released(pid, baseline_fds)
                time.sleep(1.0)  # a last probe after the release
                slowest, failures = probe.take(dropped)
                slowest_connect, _ = probe.take(began)
                after = rss_mb(pid)
                after_each.append(after)
                error = result.get("error")
                print(
                    f"cycle {cycle}: /healthz slowest during the disconnect {slowest * 1000:.0f} ms "
                    f"(bound {HEALTHZ_BOUND_S * 1000:.0f} ms), failed probes {failures}; "
                    f"slowest over the whole cycle (connect included) {slowest_connect * 1000:.0f} ms; "
                    f"server sockets closed in {released:.1f} s (bound {RELEASE_BOUND_S:.0f} s); "
                    f"RSS after {after:.0f} MB"
                    + (f"; generator error: {error}" if error else "")
                )
                ok = ok and not error and failures == 0 and slowest <= HEALTHZ_BOUND_S and released <= RELEASE_BOUND_S
            reference = after_each[1] if len(after_each) > 1 else after_each[0]
            growth = after_each[-1] - reference
            steps = " -> ".join(f"{mb:.0f}" for mb in after_each)
            print(
                f"server RSS {before:.0f} MB before, after each cycle {steps} MB: "
                f"{growth:+.0f} MB after the last over cycle {2 if len(after_each) > 1 else 1} "
                f"(bound +{RSS_GROWTH_BOUND_MB:.0f} MB)"
            )
            ok = ok and growth <= RSS_GROWTH_BOUND_MB
        finally:
            if probe is not None:
                probe.stopping.set()
            if server is not None:
                server.child.stop()
            redis.stop()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
