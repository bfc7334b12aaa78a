"""Soak: 10,000 subscribers connect, all leave at once, and all come straight back (issue 20, finding 3).

The load generator (the compiled one when it builds, else bench/lean_client.py) opens N
WebSocket connections, each with the Socket.IO CONNECT and a ``subscribe`` to one session,
holds them, then closes every one in the same instant. Each cycle runs it twice back to back:
the second run is the reconnect -- the same N clients connecting and resubscribing at once the
moment the first run's connections dropped, while the server is still cleaning those up -- and
then leaves at once too. Meanwhile a probe asks ``GET /healthz`` every 10 ms, over a new
connection each time (as a load balancer does).

Prints per cycle, each against its bound: the slowest ``/healthz`` answer during the connect,
during the disconnects and during the reconnect (100 ms each), the seconds until the server
had closed every socket (10 s), and the server's RSS before and after the cycle. Beside each
phase's slowest answer, the longest garbage collection of the server in that phase (it holds
the event loop; read from the server's log, which says every collection of
``GC_LOG_OVER_MS`` or more: ``server.gc_policy``), or "-" when none was that long. The first
cycle grows the allocator's pools, later cycles reuse them: after the last, RSS is within
10 MB of after the second (a disconnect leaves nothing behind; it was +45 MB per cycle).

    .venv/bin/python bench/soak_mass_disconnect.py [--n 10000] [--cycles 3] [--gen c|py]

Measured 2026-11-22 on the shared 2-core host at load 6-12, old (ab28fe0) and new alternated:
RSS after each cycle, 3,000 clients: 122 -> 139 -> 157 MB before, 114 -> 115 -> 115 MB after
closed connections stopped waiting for the collector; 10,000 clients: 191 -> 201 MB before,
167 -> 168 MB after. Longest collection at 10,000: 1,241 ms (732 ms of CPU, a young collection
of the survivors) before, 359 ms (147 ms of CPU) after. ``/healthz`` stayed over its bound in
every phase of both (0.2-1.6 s): at that load most long answers came with no collection over
10 ms in their phase, i.e. from the host's scheduling and the loop's other work.

Measured 2026-11-23, before (5e6cefb: asyncio's accept) and after (``server.transport.accept``
answering a whole /healthz in the turn it is accepted), alternated, 3 cycles each, worst of the
three phases per cycle: quiet machine, before 47-70 ms (3 runs, all PASS), after 20-40 ms (4
runs); with one core busy with a spinning process, before 31-176 ms (2 runs, both FAIL: 101,
109, 112, 162, 176 ms), after 29-65 ms (2 runs, both PASS). The routed GET printed beside it
(aiohttp's five turns) took 48-75 ms quiet and 51-123 ms loaded. On the stock lane
(``SESSIONHUB_TRANSPORT=stock``, which then had neither this acceptor nor the fast lane's O(1)
disconnect) one cycle gave 1,451 ms during the disconnects and 660 MB of RSS.

Measured 2026-11-26 on the stock lane, ``--n 5000 --cycles 4``: RSS after each cycle 387 -> 596
-> 804 -> 1,011 MB before its ended sessions' garbage was collected
(``server/transport/stock_garbage.py``), 287 -> 295 -> 295 -> 305 MB after; its slowest
``/healthz`` per phase 82-302 ms before, 60-1,142 ms after (one full collection per wave of
leaving clients, 0.8-1.1 s). The stock lane accepts through the acceptor too now.

Bounded: every wait has a deadline; the server and Redis started here are stopped here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
from common.probe import HealthProbe
import toolchain

HEALTHZ_BOUND_S = 0.100
RELEASE_BOUND_S = 10.0
RSS_GROWTH_BOUND_MB = 10.0
PROBE_TIMEOUT_S = 60.0
ROUTED_PATH = "/healthz?via=router"
HOLD_S = 2.0
GC_LOG_OVER_MS = 10
# time.monotonic() + this = time.time(), for the server log's timestamps.
WALL_OFFSET = time.time() - time.monotonic()


def gc_pauses(log_path: Path) -> list[tuple[float, float, str]]:
    """(monotonic time, milliseconds, generation) of each collection the server logged (JSON lines)."""
    pauses = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"server.gc_policy"' not in line:
            continue
        try:
            record = json.loads(line)
            at = datetime.datetime.fromisoformat(record["ts"]).timestamp() - WALL_OFFSET
            message = record["message"]
            generation = message.split("generation ", 1)[1][:1]
            cpu = message.split("(", 1)[1].split(" ms of CPU", 1)[0] if " ms of CPU" in message else "?"
            pauses.append((at, float(record["duration_ms"]), f"{generation}, {cpu} ms of CPU"))
        except (ValueError, KeyError):
            continue
    return pauses


def longest(pauses: list[tuple[float, float, str]], since: float, until: float = float("inf")) -> tuple[float, str]:
    """The longest pause logged between ``since`` and ``until`` and its generation ((0, ""):
    none over GC_LOG_OVER_MS)."""
    # The log's timestamps are to the millisecond, the windows' ends are probe answers: 10 ms slack.
    return max(((ms, gen) for at, ms, gen in pauses if since - 0.01 <= at <= until + 0.01), default=(0.0, ""))


def gc_text(pause: tuple[float, str]) -> str:
    return f"{pause[0]:.0f} ms (generation {pause[1]})" if pause[0] else "-"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def listen_overflows() -> int:
    """The kernel's count of connections dropped because an accept queue was full (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    if len(lines) < 2 or "ListenOverflows" not in lines[0]:
        return 0
    return int(lines[1][lines[0].index("ListenOverflows")])


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


class Run:
    """One generator run: when it began, when its connections were all subscribed, when it closed them."""

    def __init__(self, server: harness.ServerUnderTest, redis: Any, n: int, generator: str) -> None:
        self.began = time.monotonic()
        self.result = harness.run_generator(
            server, redis, generator_options(n, HOLD_S), timeout_s=60 + n / 100, generator=generator
        )
        self.ended = time.monotonic()  # it closes every connection at once, just before it exits
        connect = self.result.get("connect") or {}
        self.connected = self.began + float(connect.get("connect_s") or (self.ended - self.began))
        self.subscribed = int(connect.get("subscribed") or 0)
        self.error = self.result.get("error")


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
    bound_ms = HEALTHZ_BOUND_S * 1000
    with tempfile.TemporaryDirectory(prefix="sessionhub-soak-disconnect-") as tmp:
        workdir = Path(tmp)
        redis, url = harness.start_redis(workdir)
        server = None
        probe = None
        routed = None
        try:
            settings = {"SESSIONHUB_LOG_FORMAT": "json", "SESSIONHUB_GC_PAUSE_LOG_MS": str(GC_LOG_OVER_MS)}
            server = harness.start_sessionhub(workdir, url, settings=settings)
            pid = server.child.pid
            probe = HealthProbe(server.port, interval_s=0.010, timeout_s=PROBE_TIMEOUT_S)
            probe.start()
            # The same GET with a query goes through aiohttp's router (five loop turns, where a
            # whole /healthz is answered in the turn it is accepted): any page's or route's wait.
            routed = HealthProbe(server.port, interval_s=0.050, timeout_s=PROBE_TIMEOUT_S, path=ROUTED_PATH)
            routed.start()
            time.sleep(0.5)
            baseline_fds = open_fds(pid)
            before = rss_mb(pid)
            quiet, _ = probe.take(0.0)
            print(
                f"server RSS before {before:.0f} MB; {args.n} clients per run, two runs per cycle "
                f"(connect, reconnect), generator {generator}; quiet /healthz {quiet * 1000:.0f} ms"
            )
            after_each: list[float] = []
            for cycle in range(1, args.cycles + 1):
                rss_start = rss_mb(pid)
                overflows = listen_overflows()
                first = Run(server, redis, args.n, generator)
                second = Run(server, redis, args.n, generator)  # the reconnect: at once, no pause
                released = wait_released(pid, baseline_fds)
                time.sleep(1.0)  # a last probe after the release
                overflows = listen_overflows() - overflows
                # Windows by when a probe was answered. The disconnect: from 1 s before a run's
                # exit (its close) to the next run's start, or the release after the last; the
                # reconnect: from the second run's start until its clients were all subscribed
                # (the first run's connections are still being cleaned up meanwhile).
                routed_worst = max(
                    routed.take(first.began, first.connected)[0],
                    routed.take(first.ended - 1.0, second.began)[0],
                    routed.take(second.began, second.connected)[0],
                    routed.take(second.ended - 1.0)[0],
                )
                connect, connect_failed = probe.take(first.began, first.connected)
                drop, drop_failed = probe.take(first.ended - 1.0, second.began)
                reconnect, reconnect_failed = probe.take(second.began, second.connected)
                drop2, drop2_failed = probe.take(second.ended - 1.0)
                disconnect = max(drop, drop2)
                pauses = gc_pauses(server.child.log_path)
                gc_connect = longest(pauses, first.began, first.connected)
                gc_disconnect = max(
                    longest(pauses, first.ended - 1.0, second.began), longest(pauses, second.ended - 1.0)
                )
                gc_reconnect = longest(pauses, second.began, second.connected)
                failed = connect_failed + drop_failed + reconnect_failed + drop2_failed
                after = rss_mb(pid)
                after_each.append(after)
                errors = [run.error for run in (first, second) if run.error]
                subscribed = min(first.subscribed, second.subscribed)
                print(
                    f"cycle {cycle}: slowest /healthz during the connect {connect * 1000:.0f} ms, "
                    f"the disconnects {disconnect * 1000:.0f} ms, the reconnect {reconnect * 1000:.0f} ms "
                    f"(bound {bound_ms:.0f} ms each), failed probes {failed}; "
                    f"slowest routed GET ({ROUTED_PATH}, no bound) {routed_worst * 1000:.0f} ms; "
                    f"longest GC pause (over {GC_LOG_OVER_MS} ms) during the connect {gc_text(gc_connect)}, "
                    f"the disconnects {gc_text(gc_disconnect)}, the reconnect {gc_text(gc_reconnect)}; "
                    f"subscribed {first.subscribed} then {second.subscribed} of {args.n} "
                    f"(connect {first.connected - first.began:.1f} s, "
                    f"reconnect {second.connected - second.began:.1f} s); "
                    f"server sockets closed in {released:.1f} s (bound {RELEASE_BOUND_S:.0f} s); "
                    f"connections dropped by full accept queues (whole host) {overflows}; "
                    f"RSS {rss_start:.0f} -> {after:.0f} MB"
                    + (f"; generator error: {'; '.join(map(str, errors))}" if errors else "")
                )
                ok = (
                    ok
                    and not errors
                    and subscribed == args.n
                    and failed == 0
                    and max(connect, disconnect, reconnect) <= HEALTHZ_BOUND_S
                    and released <= RELEASE_BOUND_S
                )
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
            for thread in (probe, routed):
                if thread is not None:
                    thread.stopping.set()
            if server is not None:
                server.child.stop()
            redis.stop()
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
