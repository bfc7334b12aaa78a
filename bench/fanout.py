"""Fan-out benchmark: N subscribers on one session, sessionhub against its reference servers.

    .venv/bin/python bench/fanout.py            # N = 100 and 1000, three servers (~4 min)
    .venv/bin/python bench/fanout.py --quick    # shorter windows (smoke run)
    .venv/bin/python bench/fanout.py --n 1000 --servers sessionhub --gen py

For each server (sessionhub, stock python-socketio, Node socket.io) and N: a fresh redis-server
and server, N subscribers connected and subscribed by the load generator (the compiled one by
default), a saturation window and a fixed-rate window. Prints the tables, the ratios to the best
peer, whether the generator was the limit, and the verdict on the targets; writes the figures
to bench/out/. Loopback only; every process it starts is stopped, every wait is bounded. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import report
import toolchain

OUT_DIR = harness.BENCH / "out"
DRAIN_S = 20.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short windows (2 s saturation, 3 s fixed rate)")
    p.add_argument("--n", type=int, action="append", help="subscriber count (repeatable; default 100 and 1000)")
    p.add_argument(
        "--servers",
        help="comma-separated: sessionhub, stock, node (default: these three, node when it exists), ceiling",
    )
    p.add_argument("--gen", choices=harness.GENERATORS, help="load generator: c (default when it builds) or py")
    p.add_argument("--outstanding", type=int, default=8, help="events in flight at saturation")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight while connecting")
    p.add_argument("--rate", type=float, default=50.0, help="events/s of the fixed-rate phase")
    p.add_argument("--sat-s", type=float, help="saturation window (default 5, quick 2)")
    p.add_argument("--fixed-s", type=float, help="fixed-rate window (default 10, quick 3)")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the JSON figures")
    p.add_argument(
        "--quiet-wait-s",
        type=float,
        default=harness.QUIET_WAIT_S,
        help="longest wait before each run for other processes to calm down (default 30)",
    )
    args = p.parse_args(argv)
    args.n = args.n or [100, 1000]
    args.servers_given = args.servers is not None
    args.servers = [s.strip() for s in (args.servers or ",".join(harness.DEFAULT_SERVERS)).split(",") if s.strip()]
    unknown = [s for s in args.servers if s not in harness.STARTERS]
    if unknown:
        p.error(f"unknown server(s) {unknown}; choose from {sorted(harness.STARTERS)}")
    args.warmup_s = 0.5 if args.quick else 1.0
    args.sat_s = args.sat_s if args.sat_s is not None else (2.0 if args.quick else 5.0)
    args.fixed_s = args.fixed_s if args.fixed_s is not None else (3.0 if args.quick else 10.0)
    return args


def loudly(message: str) -> None:
    """A banner on stderr for a run that is not what was asked for."""
    bar = "!" * 78
    print(f"{bar}\n{message}\n{bar}", file=sys.stderr, flush=True)


def prepare(args: argparse.Namespace) -> str | None:
    """Build the C generator and install Node's packages as needed; an error message or None.

    A default that cannot be had is dropped loudly (C generator -> Python one, no Node server);
    one asked for explicitly is an error.
    """
    if args.gen in (None, "c"):
        built = toolchain.build_cgen()
        if built.ok:
            args.gen = "c"
        elif args.gen == "c":
            return f"the C load generator did not build: {built.why}"
        else:
            loudly(f"the C load generator did not build ({built.why});\nusing bench/lean_client.py")
            args.gen = "py"
    if "node" in args.servers:
        installed = toolchain.install_node_packages()
        if not installed.ok and args.servers_given:
            return f"the Node reference server cannot run: {installed.why}"
        if not installed.ok:
            loudly(f"the Node reference server cannot run ({installed.why}); leaving it out")
            args.servers.remove("node")
    return None


def generator_options(args: argparse.Namespace, n: int) -> list[str]:
    """What the load generator is told for one run."""
    return [
        "--n",
        str(n),
        "--outstanding",
        str(args.outstanding),
        "--concurrency",
        str(args.concurrency),
        "--warmup-s",
        str(args.warmup_s),
        "--sat-s",
        str(args.sat_s),
        "--rate",
        str(args.rate),
        "--fixed-s",
        str(args.fixed_s),
        "--drain-s",
        str(DRAIN_S),
    ]


def one_run(kind: str, n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A fresh redis-server and server, one generator run, everything stopped afterwards."""
    quiet = harness.wait_for_quiet(max_wait_s=args.quiet_wait_s)
    note = f" (machine busy: {quiet['foreign_cpu_pct']:.0f}% of a core after {quiet['waited_s']:.0f} s)"
    busy = quiet["foreign_cpu_pct"] >= harness.QUIET_PCT
    print(f"== {kind}, N={n}{note if busy else ''}", file=sys.stderr, flush=True)
    redis, redis_url = harness.start_redis(workdir)
    server = None
    try:
        server = harness.STARTERS[kind](workdir, redis_url)
        budget_s = 60 + args.warmup_s + args.sat_s + args.fixed_s + 2 * DRAIN_S + n / 50
        options = generator_options(args, n)
        result = harness.run_generator(server, redis, options, timeout_s=budget_s, generator=args.gen)
        if kind == "sessionhub" and result.get("last_status_sent"):
            # Per-connection order's last word: the session ends in the state sent last.
            result["final_status"] = harness.session_status(server.port, server.token, server.session_id)
        if "error" in result:
            print(f"   {kind} N={n} failed: {result['error']}\n{server.child.log_tail()}", file=sys.stderr)
        elif result.get("connect", {}).get("failed"):
            print(
                f"   {kind} N={n}: {result['connect']['failed']} subscriptions failed; server log:\n"
                f"{server.child.log_tail(40)}",
                file=sys.stderr,
            )
        return {"server": kind, **result, "n": n, "before": quiet}
    except RuntimeError as exc:
        print(f"   {kind} N={n} could not start: {exc}", file=sys.stderr)
        return {"server": kind, "n": n, "generator": args.gen, "error": str(exc)}
    finally:
        if server is not None:
            server.child.stop()
        redis.stop()


def write_json(args: argparse.Namespace, results: list[dict[str, Any]], checks: dict[str, Any]) -> Path:
    """bench/out/fanout-<time>.json and bench/out/fanout-latest.json."""
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "targets": checks,
    }
    text = json.dumps(document, indent=2)
    path: Path = args.out / f"fanout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(text)
    (args.out / "fanout-latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run every (server, N), print the tables and the verdict; 0 unless a run failed."""
    args = parse_args(argv)
    problem = prepare(args)
    if problem:
        print(f"fanout: {problem}", file=sys.stderr)
        return 2
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(harness.LOAD_CORE)})  # keep this (mostly idle) process off the server's core
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="sessionhub-bench-") as tmp:
            results = [one_run(kind, n, args, Path(tmp)) for kind in args.servers for n in args.n]
    except RuntimeError as exc:  # a missing tool or a process that would not start
        print(f"fanout: {exc}", file=sys.stderr)
        return 2
    print()
    print(report.connect_table(results))
    print()
    print(report.saturation_table(results))
    print()
    print(report.fixed_table(results))
    print()
    print(report.ratio_table(results))
    print()
    print(f"GENERATOR ({args.gen}; generator-bound when its core is at >= {report.GEN_BOUND_PCT:.0f}% in saturation)")
    print("\n".join(report.generator_check(results)) or "  (no saturation figures)")
    lines, checks = report.verdict(results)
    print()
    cores = f"server on core {harness.SERVER_CORE}, generator and redis on core {harness.LOAD_CORE}"
    print(f"TARGETS (N={report.TARGET_N}; {cores})")
    print("\n".join(lines) if lines else "  (no N=1000 sessionhub run to judge)")
    path = write_json(args, results, checks)
    shown = path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path  # --out may be elsewhere
    print(f"\nfigures: {shown}  ({time.monotonic() - started:.0f} s)")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
