"""Connections benchmark: how fast clients connect and subscribe, and what each one costs.

    .venv/bin/python bench/connections.py                  # N = 1,000 and 10,000
    .venv/bin/python bench/connections.py --n 1000 --trace # where the memory goes (tracemalloc)

For each N: a fresh redis-server and sessionhub, then the load generator (the compiled one
when it builds) opens N connections, each doing the WebSocket handshake, the Socket.IO
CONNECT with its token check and a ``subscribe``, ``--concurrency`` at a time, and holds them
open. Prints connections per second and the server's resident memory per connected,
subscribed client. ``--trace`` runs the server under tracemalloc and lists the allocation
sites that grew while the clients connected (a traced run is slower and heavier: its rate and
RSS are not the figures). Loopback only; every process started is stopped; waits are bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import harness
from common.servers import pin_this_process
import toolchain

TARGET_RATE = 2000.0  # connections (handshake + subscribe) per second
TARGET_KIB = 15.0  # server memory per connected, subscribed client
SNAPSHOT_WAIT_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, action="append", help="clients (repeatable; default 1000 and 10000)")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight")
    p.add_argument("--hold-s", type=float, default=1.0, help="how long the clients stay connected")
    p.add_argument("--trace", action="store_true", help="tracemalloc breakdown instead of the figures")
    p.add_argument("--top", type=int, default=25, help="allocation sites listed with --trace")
    p.add_argument("--gen", choices=harness.GENERATORS, default="c")
    args = p.parse_args(argv)
    args.n = args.n or [1000, 10000]
    return args


def generator_options(args: argparse.Namespace, n: int, hold_s: float) -> list[str]:
    """Connect, hold, nothing else."""
    return [
        "--n", str(n), "--concurrency", str(args.concurrency), "--sat-s", "0", "--fixed-s", "0",
        "--hold-s", str(hold_s), "--handshake-timeout-s", "60",
    ]  # fmt: skip


def run(args: argparse.Namespace, n: int, workdir: Path) -> dict[str, Any]:
    """One untraced run: the generator's connect figures."""
    quiet = harness.wait_for_quiet()
    redis, redis_url = harness.start_redis(workdir)
    server = None
    try:
        server = harness.start_sessionhub(workdir, redis_url)
        budget_s = 60 + args.hold_s + n / 100
        result = harness.run_generator(
            server, redis, generator_options(args, n, args.hold_s), timeout_s=budget_s, generator=args.gen
        )
        return {"n": n, "before": quiet, **result}
    finally:
        if server is not None:
            server.child.stop()
        redis.stop()


def traced(args: argparse.Namespace, n: int, workdir: Path) -> None:
    """One traced run: snapshots before and while ``n`` clients are held; the sites that grew."""
    snapshots = workdir / "snapshots"
    snapshots.mkdir()
    redis, redis_url = harness.start_redis(workdir)
    server = None
    try:
        server = harness.start_sessionhub(workdir, redis_url, snapshots=snapshots)
        before = _snapshot(server, snapshots, 1)
        hold_s = max(args.hold_s, 30.0)  # long enough for the second snapshot
        argv = harness.pinned(
            harness.LOAD_CORE,
            [
                *harness.generator_argv(args.gen), "--port", str(server.port), "--token", server.token,
                "--session", server.session_id, "--server-pid", str(server.child.pid),
                "--deadline-s", str(120 + hold_s), *generator_options(args, n, hold_s),
            ],
        )  # fmt: skip
        gen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert gen.stderr is not None
            for line in gen.stderr:
                sys.stderr.write(line)
                if "subscribed in" in line:
                    break
            after = _snapshot(server, snapshots, 2)
        finally:
            gen.kill()
            gen.wait(10)
        _print_growth(before, after, n, args.top)
    finally:
        if server is not None:
            server.child.stop()
        redis.stop()


def _snapshot(server: harness.ServerUnderTest, folder: Path, number: int) -> tracemalloc.Snapshot:
    os.kill(server.child.pid, signal.SIGUSR1)
    path = folder / f"{number}.snap"
    deadline = time.monotonic() + SNAPSHOT_WAIT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no snapshot from the server:\n{server.child.log_tail()}")
        time.sleep(0.1)
    return tracemalloc.Snapshot.load(str(path))


def _print_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, n: int, top: int) -> None:
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    grown = after.compare_to(before, "lineno")
    total = sum(stat.size_diff for stat in grown)
    print(f"\nPYTHON HEAP GROWTH with {n} clients: {total / 1024 / n:.2f} KiB per client (tracemalloc)")
    print(f"{'B/client':>9} {'blocks/client':>13}  site")
    for stat in grown[:top]:
        frame = stat.traceback[0]
        where = f"{_short(frame.filename)}:{frame.lineno}"
        print(f"{stat.size_diff / n:9.0f} {stat.count_diff / n:13.2f}  {where}")
    by_trace = after.compare_to(before, "traceback")
    print("\nLARGEST SITES WITH THEIR CALLERS")
    for stat in by_trace[: min(top, 10)]:
        print(f"-- {stat.size_diff / n:.0f} B/client, {stat.count_diff / n:.2f} blocks/client")
        for frame in reversed(list(stat.traceback)[-7:]):  # the allocation first, then its callers
            print(f"     {_short(frame.filename)}:{frame.lineno}")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/", "lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main(argv: list[str] | None = None) -> int:
    """Run each N and print the figures (or the trace); 0 unless a run failed."""
    args = parse_args(argv)
    if args.gen == "c" and not toolchain.build_cgen().ok:
        args.gen = "py"
    pin_this_process(harness.LOAD_CORE)
    failed = False
    with tempfile.TemporaryDirectory(prefix="sessionhub-conn-") as tmp:
        if args.trace:
            traced(args, args.n[0], Path(tmp))
            return 0
        rows = []
        for n in args.n:
            result = run(args, n, Path(tmp))
            connect = result.get("connect", {})
            if "error" in result or connect.get("failed"):
                failed = True
                print(f"N={n}: {result.get('error') or connect.get('failures')}", file=sys.stderr)
            rows.append(result)
    print(f"\nCONNECTIONS (handshake + token + subscribe, {args.concurrency} in flight; generator {args.gen})")
    print(f"{'N':>7} {'subscribed':>10} {'seconds':>8} {'per s':>8} {'RSS0 MiB':>9} {'RSS1 MiB':>9} {'KiB/client':>10}")
    for r in rows:
        c = r.get("connect", {})
        if not c:
            continue
        rate = c["subscribed"] / c["connect_s"] if c["connect_s"] else 0.0
        print(
            f"{r['n']:>7} {c['subscribed']:>10} {c['connect_s']:>8.2f} {rate:>8.0f} {c['rss_before_kib'] / 1024:>9.1f} "
            f"{c['rss_after_kib'] / 1024:>9.1f} {c['rss_per_client_kib']:>10.1f}"
        )
        r["per_s"] = round(rate)
    print(f"targets: >= {TARGET_RATE:.0f} connections/s, <= {TARGET_KIB:.0f} KiB per client")
    out = harness.BENCH / "out"
    out.mkdir(exist_ok=True)
    (out / "connections-latest.json").write_text(
        json.dumps({"when": time.strftime("%FT%T%z"), "results": rows}, indent=2)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
