"""Many small sessions: K sessions x M subscribers, P publishers; the cost of one committed event.

    .venv/bin/python bench/sessions.py            # 100x10, 1000x10, 1000x2; sessionhub, node, stock
    .venv/bin/python bench/sessions.py --quick    # shorter windows (smoke run)
    .venv/bin/python bench/sessions.py --shape 1000x2 --servers sessionhub,node

The single-room benchmark (bench/fanout.py) measures fan-out; here the room is small and the
cost of committing an event dominates (issue 26). For each server and shape: a fresh
redis-server and server, K sessions (sessionhub: created through POST /voicebot/create_session;
the references keep their state in memory), M subscribers per session and P publisher
connections driven by the compiled generator bench/cgen/sessions.c (session s is changed only
by publisher s % P, so each session's changes keep one connection's order), a saturation
window (each publisher keeps --outstanding events in flight) and a fixed-rate window (--rate
events/s in total). Prints committed events/s, deliveries/s, latencies, the server's and
Redis' CPU per committed event, and the ratios to Node socket.io of the same run; writes the
figures to bench/out/sessions-*.json. Loopback only; every process it starts is stopped,
every wait is bounded. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import harness
import report
import toolchain
from common import publish_probe
from common.publish_probe import PublishProbe

OUT_DIR = harness.BENCH / "out"
DRAIN_S = 20.0
READ_BACK_TIMEOUT_S = 10.0
READ_BACK_LIMIT_S = 180.0
# The recording lease (6 s) plus a sweep (2 s), and slack: a recorder gone is paused within it.
READ_BACK_SETTLE_S = 10.0
READ_BACK_POLL_S = 0.05
DEFAULT_SHAPES = ("100x10", "1000x10", "1000x2")
SERVERS = ("sessionhub", "node", "stock")
# Also runnable, never by default: bench/floor_server.py, the least a Python server can spend on
# this protocol with sessionhub's status script (a bound, not a reference).
CHOICES = (*SERVERS, "floor")
REFERENCE = "node"
CREATE_LIMITS = {"SESSIONHUB_CREATES_PER_MIN": "1000000", "SESSIONHUB_CREATES_PER_MIN_PER_ADDRESS": "1000000"}
SESSIONS_BINARY = toolchain.CGEN_DIR / "build" / "sessions"


def parse_shape(text: str) -> tuple[int, int]:
    """``KxM`` -> (K sessions, M subscribers each)."""
    k, _, m = text.lower().partition("x")
    shape = (int(k), int(m))
    if shape[0] < 1 or shape[1] < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: K and M must be >= 1")
    return shape


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short windows (2 s saturation, 3 s fixed rate)")
    p.add_argument(
        "--shape", type=parse_shape, action="append", help="KxM (repeatable; default 100x10, 1000x10, 1000x2)"
    )
    p.add_argument("--servers", help="comma-separated: sessionhub, node, stock, floor (default: the first three)")
    p.add_argument("--publishers", type=int, default=64, help="publisher connections (default 64)")
    p.add_argument("--outstanding", type=int, default=8, help="events in flight per publisher at saturation")
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight while connecting")
    p.add_argument("--rate", type=float, default=100.0, help="events/s in total in the fixed-rate window")
    p.add_argument("--sat-s", type=float, help="saturation window (default 5, quick 2)")
    p.add_argument("--fixed-s", type=float, help="fixed-rate window (default 10, quick 3)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each (server, shape), interleaved")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the JSON figures")
    p.add_argument("--quiet-wait-s", type=float, default=harness.QUIET_WAIT_S, help="longest wait for a quiet machine")
    p.add_argument(
        "--redis-core",
        choices=("load", "server"),
        default="load",
        help="the core redis-server runs on: the generator's (default) or the server's, as issue 26 measured",
    )
    args = p.parse_args(argv)
    args.shape = args.shape or [parse_shape(s) for s in DEFAULT_SHAPES]
    args.servers = [s.strip() for s in (args.servers or ",".join(SERVERS)).split(",") if s.strip()]
    unknown = [s for s in args.servers if s not in CHOICES]
    if unknown:
        p.error(f"unknown server(s) {unknown}; choose from {CHOICES}")
    args.warmup_s = 0.5 if args.quick else 1.0
    args.sat_s = args.sat_s if args.sat_s is not None else (2.0 if args.quick else 5.0)
    args.fixed_s = args.fixed_s if args.fixed_s is not None else (3.0 if args.quick else 10.0)
    return args


def session_ids(server: harness.ServerUnderTest, k: int) -> list[str]:
    """K session ids: created on sessionhub (8 requests at a time), made up for the references."""
    if server.kind != "sessionhub":
        return [str(uuid.uuid4()) for _ in range(k)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda _: harness.create_session(server.port, server.token), range(k)))


def read_back(server: harness.ServerUnderTest, sent: dict[str, str]) -> dict[str, Any]:
    """sessionhub's status of each sampled session against the status sent to it last (a
    recording reads paused once its publisher has gone: ``report.status_after_close``).

    Right after the generator closes its thousands of connections the server is busy with
    their disconnects, so a read that times out is tried again until READ_BACK_LIMIT_S, and a
    recording whose publisher's disconnect the server has not reached yet reads ``recording``
    for a moment: a wrong status is read again until READ_BACK_SETTLE_S (the recording lease
    plus a sweep, the longest the protocol allows) and only then counted wrong. The longest
    such wait is reported. A failure is reported, not fatal (the figures of the run stand).
    """
    deadline = time.monotonic() + READ_BACK_LIMIT_S
    started = time.monotonic()
    wrong, settled_s = 0, 0.0
    mismatches: list[dict[str, Any]] = []
    for session_id, status in sent.items():
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.port}/voicebot/sessions/{session_id}",
            headers={"Authorization": f"Bearer {server.token}"},
        )
        expected = report.status_after_close(status)
        while True:
            try:
                with urllib.request.urlopen(request, timeout=READ_BACK_TIMEOUT_S) as response:
                    read = json.loads(response.read())["status"]
            except (urllib.error.HTTPError, ValueError, KeyError) as exc:  # an answer: no retry
                return {"checked": 0, "wrong": None, "error": repr(exc)}
            except OSError as exc:  # a timeout or a refused connection
                if time.monotonic() >= deadline:
                    return {"checked": 0, "wrong": None, "error": repr(exc)}
                continue
            waited = time.monotonic() - started
            if read == expected:
                settled_s = max(settled_s, waited)
                break
            if waited >= READ_BACK_SETTLE_S:
                wrong += 1
                mismatches.append({"session": session_id, "sent_last": status, "expected": expected, "read": read})
                break
            time.sleep(READ_BACK_POLL_S)
    return {"checked": len(sent), "wrong": wrong, "mismatches": mismatches, "settled_s": round(settled_s, 2)}


def generator_argv(args: argparse.Namespace, server: harness.ServerUnderTest, redis: harness.Child,
                   sessions_file: Path, m: int, deadline_s: float) -> list[str]:  # fmt: skip
    """The generator's command line, pinned to the load core."""
    return harness.pinned(
        harness.LOAD_CORE,
        [
            str(SESSIONS_BINARY),
            "--port", str(server.port),
            "--token", server.token,
            "--sessions-file", str(sessions_file),
            "--server-pid", str(server.child.pid),
            "--redis-pid", str(redis.pid),
            "--subscribers", str(m),
            "--publishers", str(args.publishers),
            "--outstanding", str(args.outstanding),
            "--concurrency", str(args.concurrency),
            "--warmup-s", str(args.warmup_s),
            "--sat-s", str(args.sat_s),
            "--rate", str(args.rate),
            "--fixed-s", str(args.fixed_s),
            "--drain-s", str(DRAIN_S),
            "--deadline-s", str(deadline_s),
        ],
    )  # fmt: skip


def one_run(kind: str, k: int, m: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """A fresh redis-server and server, one generator run, everything stopped afterwards."""
    import subprocess

    quiet = harness.wait_for_quiet(max_wait_s=args.quiet_wait_s)
    busy = quiet["foreign_cpu_pct"] >= harness.QUIET_PCT
    note = f" (machine busy: {quiet['foreign_cpu_pct']:.0f}% of a core)" if busy else ""
    where = ", redis on the server's core" if args.redis_core == "server" else ""
    print(f"== {kind}, {k}x{m}{where}{note}", file=sys.stderr, flush=True)
    base = {"server": kind, "k": k, "m": m, "shape": f"{k}x{m}", "before": quiet, "redis_core": args.redis_core}
    redis_core = harness.SERVER_CORE if args.redis_core == "server" else harness.LOAD_CORE
    redis, redis_url = harness.start_redis(workdir, core=redis_core)
    base["redis_cpus"] = sorted(os.sched_getaffinity(redis.pid))  # where it runs, as the kernel says
    server = None
    try:
        if kind == "sessionhub":  # K sessions are created up front: lift the creation limits
            server = harness.start_sessionhub(workdir, redis_url, settings=CREATE_LIMITS)
        else:
            server = harness.STARTERS[kind](workdir, redis_url)
        ids = session_ids(server, k)
        sessions_file = workdir / f"sessions-{server.port}.txt"
        sessions_file.write_text("\n".join(ids) + "\n")
        deadline_s = 60 + args.warmup_s + args.sat_s + args.fixed_s + 2 * DRAIN_S + k * m / 50
        argv = generator_argv(args, server, redis, sessions_file, m, deadline_s)
        redis_port = int(redis_url.rsplit(":", 1)[1].split("/", 1)[0])
        try:
            with PublishProbe(redis_port, server.child.pid) as probe:
                done = subprocess.run(argv, cwd=harness.ROOT, capture_output=True, timeout=deadline_s + 30)
        except subprocess.TimeoutExpired:
            return {**base, "error": "generator timed out"}
        sys.stderr.write(done.stderr.decode(errors="replace"))
        lines = [x for x in done.stdout.decode(errors="replace").splitlines() if x.startswith("RESULT ")]
        if not lines:
            return {**base, "error": f"generator exited {done.returncode} without a result"}
        result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
        for phase in ("saturation", "fixed"):  # what reached Redis' bus within each window
            if isinstance(result.get(phase), dict):
                result[phase].update(publish_probe.window(probe.samples, result[phase]))
        if kind == "sessionhub" and result.get("last_status_sent"):
            result["read_back"] = read_back(server, result["last_status_sent"])
        if "error" in result:
            print(f"   {kind} {k}x{m} failed: {result['error']}\n{server.child.log_tail()}", file=sys.stderr)
        elif (result.get("connect") or {}).get("failed"):
            print(f"   {kind} {k}x{m}: {result['connect']['failed']} subscriptions failed", file=sys.stderr)
        return {**base, **result}
    except (RuntimeError, OSError) as exc:
        print(f"   {kind} {k}x{m} could not run: {exc}", file=sys.stderr)
        return {**base, "error": str(exc)}
    finally:
        if server is not None:
            server.child.stop()
        redis.stop()


def per_event_us(block: dict[str, Any], key: str) -> float | None:
    """CPU of one process per committed event in the window, in µs (its % of a core / events/s)."""
    pct, rate = block.get(key), block.get("events_per_s")
    return 1e4 * pct / rate if pct is not None and rate else None


def published_per_s(block: dict[str, Any]) -> float | None:
    """PUBLISHes that reached Redis per second of the window: the events other nodes could
    have had by then (sessionhub publishes in the commit's script; node's adapter after its
    local broadcast, through a queue that can fall behind)."""
    published, window_s = block.get("published"), block.get("window_s")
    return published / window_s if published is not None and window_s else None


def _lat(kind: str, which: str) -> Callable[[dict[str, Any]], str]:
    return lambda block: report._fmt((block.get(kind) or {}).get(which), ".1f")


def _per_event(key: str, spec: str) -> Callable[[dict[str, Any]], str]:
    return lambda block: report._fmt(per_event_us(block, key), spec)


SATURATION_COLUMNS: list[report.Column] = [
    ("events/s", report._key("events_per_s", ".0f")),
    ("deliv/s", report._key("deliveries_per_s", ".0f")),
    ("ack p50", _lat("ack", "p50_ms")),
    ("ack p99", _lat("ack", "p99_ms")),
    ("dlv p50", _lat("delivery", "p50_ms")),
    ("dlv p99", _lat("delivery", "p99_ms")),
    ("srv µs/ev", _per_event("server_cpu_pct", ".0f")),
    ("redis µs/ev", _per_event("redis_cpu_pct", ".1f")),
    ("srv CPU%", report._key("server_cpu_pct", ".0f")),
    ("redis CPU%", report._key("redis_cpu_pct", ".0f")),
    # PUBLISHes that reached Redis within the window per committed event, and the server's
    # memory growth over it: a server whose publishes fall behind keeps them in its memory
    ("pub/ev", report._key("published_per_event", ".2f")),
    ("rss +MB", report._key("server_rss_growth_mb", ".0f")),
    ("gen CPU%", report._key("gen_cpu_pct", ".0f")),
    ("other CPU%", report._other),
    ("missing", report._key("missing")),
    ("errors", report._key("error_acks")),
    ("no-ops", report._key("noop_acks")),
]
FIXED_COLUMNS: list[report.Column] = [
    ("rate", report._key("rate", ".0f")),
    ("events/s", report._key("events_per_s", ".1f")),
    ("dlv p50", _lat("delivery", "p50_ms")),
    ("dlv p99", _lat("delivery", "p99_ms")),
    ("dlv max", _lat("delivery", "max_ms")),
    ("ack p50", _lat("ack", "p50_ms")),
    ("ack p99", _lat("ack", "p99_ms")),
    ("missing", report._key("missing")),
    ("srv µs/ev", _per_event("server_cpu_pct", ".0f")),
    ("redis µs/ev", _per_event("redis_cpu_pct", ".1f")),
    ("pub/ev", report._key("published_per_event", ".2f")),
    ("rss +MB", report._key("server_rss_growth_mb", ".0f")),
    ("other CPU%", report._other),
    # how late the generator sent its most delayed event: a descheduled generator's stall
    # lands in every latency of the events behind it
    ("slip max", report._key("send_slip_max_ms", ".0f")),
]


def phase_table(title: str, phase: str, columns: list[report.Column], results: list[dict[str, Any]]) -> str:
    """One row per run: its shape, server and the phase's columns."""
    rows = [[r["shape"], r["server"], *(cell(r.get(phase) or {}) for _, cell in columns)] for r in results]
    return report._table(title, ["KxM", "server", *(header for header, _ in columns)], rows)


# name, phase, how to read it, higher is better
FIGURES: list[tuple[str, str, Any, bool]] = [
    ("committed events/s", "saturation", lambda b: b.get("events_per_s"), True),
    ("events/s on Redis' bus", "saturation", lambda b: published_per_s(b), True),
    ("server CPU µs/event", "saturation", lambda b: per_event_us(b, "server_cpu_pct"), False),
    ("redis CPU µs/event", "saturation", lambda b: per_event_us(b, "redis_cpu_pct"), False),
    ("fixed-rate delivery p99 ms", "fixed", lambda b: (b.get("delivery") or {}).get("p99_ms"), False),
    ("fixed-rate ack p99 ms", "fixed", lambda b: (b.get("ack") or {}).get("p99_ms"), False),
]


def ratio_table(results: list[dict[str, Any]]) -> str:
    """sessionhub against node of the same run, per shape; > 1: sessionhub better."""
    rows = []
    for shape in dict.fromkeys(r["shape"] for r in results):
        hubs = [r for r in results if r["shape"] == shape and r["server"] == "sessionhub" and "error" not in r]
        refs = [r for r in results if r["shape"] == shape and r["server"] == REFERENCE and "error" not in r]
        for hub, ref in zip(hubs, refs, strict=False):
            for name, phase, read, higher_better in FIGURES:
                mine, theirs = read(hub.get(phase) or {}), read(ref.get(phase) or {})
                if not mine or not theirs:
                    continue
                ratio = mine / theirs if higher_better else theirs / mine
                skew = any(report.skewed(r.get(phase) or {}, phase) for r in (hub, ref))
                rows.append([shape, name, f"{mine:.1f}", f"{theirs:.1f}", f"{ratio:.2f}x", "skewed" if skew else ""])
    header = ["KxM", "figure", "sessionhub", REFERENCE, "sessionhub vs node", "note"]
    return report._table("SESSIONHUB / NODE (same run; ratio > 1: sessionhub better)", header, rows)


def order_lines(results: list[dict[str, Any]]) -> list[str]:
    """sessionhub's per-connection order and the read-back of the sampled sessions."""
    lines = []
    for r in results:
        if r["server"] != "sessionhub" or "error" in r:
            continue
        s = r.get("saturation") or {}
        back = r.get("read_back") or {}
        counts = [
            s.get(key) for key in ("acks_out_of_order", "offsets_out_of_order", "noop_acks", "gaps", "duplicates")
        ]
        ok = not any(counts) and back.get("checked", 0) > 0 and back.get("wrong") == 0
        lines.append(
            f"  {'PASS' if ok else 'FAIL'}  {r['shape']}: {s.get('committed')} changes; out of order: "
            f"{counts[0]} acks, {counts[1]} offsets; {counts[2]} no-ops, {counts[3]} gaps, {counts[4]} dups; "
            f"{back.get('wrong')} of {back.get('checked')} sampled sessions read back wrong "
            f"(settled {back.get('settled_s')} s after the generator left)"
        )
    return lines


def prepare(servers: list[str]) -> str:
    """Build the generator, install the Node reference's packages when it runs, and move this
    process to the load core; why a run cannot go ahead, or "" when it can."""
    built = toolchain.build_cgen()
    if not built.ok or not SESSIONS_BINARY.exists():
        return f"the C generator did not build: {built.why}"
    if REFERENCE in servers:
        installed = toolchain.install_node_packages()
        if not installed.ok:
            return f"the Node reference cannot run: {installed.why}"
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(harness.LOAD_CORE)})
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run every (shape, server), print the tables; 0 unless a run failed."""
    args = parse_args(argv)
    why_not = prepare(args.servers)
    if why_not:
        print(f"sessions: {why_not}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="sessionhub-sessions-") as tmp:
        for k, m in args.shape:
            for _ in range(args.repeat):
                results += [one_run(kind, k, m, args, Path(tmp)) for kind in args.servers]
    print()
    title = "SATURATION (committed events; latencies in ms; CPU per committed event in µs)"
    print(phase_table(title, "saturation", SATURATION_COLUMNS, results))
    print()
    print(phase_table("FIXED RATE (latencies in ms)", "fixed", FIXED_COLUMNS, results))
    print()
    print(ratio_table(results))
    print()
    print(f"GENERATOR / MACHINE (generator-bound at >= {report.GEN_BOUND_PCT:.0f}%, foreign load at >= "
          f"{report.FOREIGN_BUSY_PCT:.0f}% of a core)")  # fmt: skip
    for r in results:
        for phase in ("saturation", "fixed"):
            block = r.get(phase) or {}
            other = report.other_cpu_pct(block)
            gen = block.get("gen_cpu_pct") or 0.0
            if (other or 0.0) >= report.FOREIGN_BUSY_PCT or (phase == "saturation" and gen >= report.GEN_BOUND_PCT):
                print(f"  skewed: {r['server']} {r['shape']} {phase}: other {other or 0:.0f}%, generator {gen:.0f}%")
    print()
    print("ORDER (sessionhub)")
    print("\n".join(order_lines(results)) or "  (no sessionhub run)")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    path = args.out / f"sessions-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(document, indent=2))
    (args.out / "sessions-latest.json").write_text(path.read_text())
    print(f"\nfigures: {path}  ({time.monotonic() - started:.0f} s)")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
