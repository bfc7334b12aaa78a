"""The highest steady rate each server holds in many small sessions, every event on Redis' bus.

bench/sessions.py's saturation figure is what a server acks while its loop is full; node
socket.io's Redis adapter then publishes about a tenth of those events and queues the rest in
memory (bench/README.md, ninth round), so that figure is not one node can keep. This searches,
per (shape, server), the highest rate of the fixed-rate window that is *held*: every event sent
in the window committed, none missing or refused, its ``PUBLISH`` on Redis within the window
(``pub/ev`` at least ``--min-published``) and delivery p99 under ``--p99-ms``. Each probe is a
run of its own (a fresh redis-server and server, ``--warm-s`` of saturation to warm it, then
``--window-s`` at the rate): it starts at ``--start`` events/s, doubles while held, then halves
the gap between the highest rate held and the lowest one not held, ``--steps`` probes in all.

    .venv/bin/python bench/sustained.py --shape 1000x2 --servers sessionhub,node
    .venv/bin/python bench/sustained.py --shape 1000x10 --start 2000 --steps 5

Bounded: ``--steps`` probes per (shape, server), each bounded as bench/sessions.py bounds a run.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import report
import sessions

ROUND_TO = 100  # rates probed are multiples of this many events/s


def held(block: dict[str, Any], rate: float, *, p99_ms: float, min_published: float) -> list[str]:
    """Why the fixed-rate window ``block`` at ``rate`` was not held (empty: it was)."""
    if not block:
        return ["no figures"]
    why = []
    if (block.get("events_per_s") or 0.0) < 0.97 * rate:
        why.append(f"committed {block.get('events_per_s') or 0:.0f}/s")
    if block.get("missing") or block.get("error_acks"):
        why.append(f"missing {block.get('missing')}, errors {block.get('error_acks')}")
    published = block.get("published_per_event")
    if published is None or published < min_published:
        why.append(f"pub/ev {published}")
    p99 = (block.get("delivery") or {}).get("p99_ms")
    if p99 is None or p99 > p99_ms:
        why.append(f"delivery p99 {p99} ms")
    return why


def search(probe: Callable[[float], list[str]], *, start: float, steps: int) -> tuple[float, float | None, list[Any]]:
    """(highest rate held, lowest rate not held or None, the probes) after ``steps`` probes."""
    best, worst = 0.0, None
    rate = start
    tried: list[Any] = []
    for _ in range(steps):
        why = probe(rate)
        tried.append({"rate": rate, "held": not why, "why": why})
        if not why:
            best = rate
        else:
            worst = rate
        rate = rate * 2 if worst is None else best + (worst - best) / 2
        rate = max(ROUND_TO, round(rate / ROUND_TO) * ROUND_TO)
        if worst is not None and (rate <= best or rate >= worst):
            break  # the gap is one step of ROUND_TO: nothing left between them
    return best, worst, tried


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the shapes and servers as bench/sessions.py takes them)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", type=sessions.parse_shape, action="append", help="KxM (repeatable; default 1000x2)")
    p.add_argument("--servers", default="sessionhub,node", help="comma-separated (default sessionhub,node)")
    p.add_argument("--start", type=float, default=4000.0, help="first rate probed, events/s (default 4000)")
    p.add_argument("--steps", type=int, default=6, help="probes per (shape, server) (default 6)")
    p.add_argument("--window-s", type=float, default=6.0, help="each probe's fixed-rate window (default 6)")
    p.add_argument("--warm-s", type=float, default=3.0, help="saturation before it, to warm the server (default 3)")
    p.add_argument("--p99-ms", type=float, default=100.0, help="delivery p99 a held rate stays under (default 100)")
    p.add_argument("--min-published", type=float, default=0.97, help="pub/ev a held rate reaches (default 0.97)")
    p.add_argument("--publishers", type=int, default=64, help="publisher connections (default 64)")
    p.add_argument("--redis-core", choices=("load", "server"), default="load", help="as bench/sessions.py")
    p.add_argument("--out", type=Path, default=sessions.OUT_DIR, help="folder for the JSON figures")
    args = p.parse_args(argv)
    args.shape = args.shape or [(1000, 2)]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [s for s in args.servers if s not in sessions.CHOICES]
    if unknown:
        p.error(f"unknown server(s) {unknown}; choose from {sessions.CHOICES}")
    if args.steps < 1 or args.start < ROUND_TO or args.window_s <= 0 or args.warm_s < 0:
        p.error(f"--steps must be >= 1, --start >= {ROUND_TO}, --window-s > 0, --warm-s >= 0")
    return args


def run_args(args: argparse.Namespace, rate: float) -> argparse.Namespace:
    """bench/sessions.py's options for one probe: a short saturation window to warm the server
    (a server fresh from its clients' connections spends up to twice its warm CPU per event in
    its first seconds, node's JIT too), then the fixed-rate window at ``rate``."""
    return argparse.Namespace(
        publishers=args.publishers, outstanding=8, concurrency=64, warmup_s=1.0, sat_s=args.warm_s,
        fixed_s=args.window_s, rate=rate, quiet_wait_s=0.0, redis_core=args.redis_core,
    )  # fmt: skip


def probe_once(
    args: argparse.Namespace, workdir: Path, kind: str, k: int, m: int, runs: list[Any], rate: float
) -> list[str]:
    """One probe: a run at ``rate`` (kept in ``runs``); why it was not held (empty: it was)."""
    run = sessions.one_run(kind, k, m, run_args(args, rate), workdir)
    runs.append(run)
    if "error" in run:
        why = ["run failed: " + str(run["error"])]
    else:
        why = held(run.get("fixed") or {}, rate, p99_ms=args.p99_ms, min_published=args.min_published)
    print(f"   {kind} {k}x{m} at {rate:.0f}/s: {'; '.join(why) or 'held'}", file=sys.stderr)
    return why


def main(argv: list[str] | None = None) -> int:
    """Search every (shape, server), print the table; 0 unless a probe failed to run."""
    args = parse_args(argv)
    why_not = sessions.prepare(args.servers)
    if why_not:
        print(f"sustained: {why_not}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="sessionhub-sustained-") as tmp:
        for k, m in args.shape:
            for kind in args.servers:
                runs: list[dict[str, Any]] = []
                probe = functools.partial(probe_once, args, Path(tmp), kind, k, m, runs)
                best, worst, tried = search(probe, start=args.start, steps=args.steps)
                failed = failed or any("error" in r for r in runs)
                results.append({"server": kind, "shape": f"{k}x{m}", "held": best, "not_held": worst,
                                "probes": tried, "runs": runs})  # fmt: skip
    print()
    print(table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "options": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "results": results}  # fmt: skip
    path = args.out / f"sustained-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(document, indent=2))
    (args.out / "sustained-latest.json").write_text(path.read_text())
    print(f"\nfigures: {path}  ({time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


def table(results: list[dict[str, Any]]) -> str:
    """Per (shape, server): the highest rate held, the lowest not held, and sessionhub / node."""
    rows = []
    for r in results:
        node = next((x for x in results if x["shape"] == r["shape"] and x["server"] == sessions.REFERENCE), None)
        ratio = r["held"] / node["held"] if node and node["held"] and r["server"] != sessions.REFERENCE else None
        rows.append([r["shape"], r["server"], report._fmt(r["held"], ".0f"), report._fmt(r["not_held"], ".0f"),
                     report._fmt(ratio, ".2f") + ("x" if ratio is not None else "")])  # fmt: skip
    header = ["KxM", "server", "held events/s", "not held", f"vs {sessions.REFERENCE}"]
    return report._table(
        "SUSTAINED (every event committed, on Redis' bus within the window, delivery p99 bounded)", header, rows
    )


if __name__ == "__main__":
    sys.exit(main())
