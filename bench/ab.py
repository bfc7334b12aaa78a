"""Two trees of this repository compared on bench/sessions.py, alternated in ABBA order.

    .venv/bin/python bench/ab.py HEAD~1 WORKTREE --pairs 4 -- --shape 1000x2 --servers sessionhub --sat-s 6 --fixed-s 1

``BEFORE`` and ``AFTER`` are git revisions, or ``WORKTREE`` for this checkout as it is
(uncommitted changes included). Each revision is checked out once, in a temporary git worktree
that borrows this checkout's ``.venv`` and ``bench/node/node_modules``, and the two trees take
turns running ``bench/sessions.py`` with the arguments after ``--``, in the order A B B A A B ...:
a change that is smaller than the drift of a machine over an hour (bench/README.md, tenth
round) is not mistaken for one, as it was when the same tree always ran first. What prints is
each run's saturation figures per (server, shape) and, per tree, their means (and the median of
the CPU per event: one odd run of a dozen moves a mean by a few percent).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sessions

ROOT = Path(__file__).resolve().parent.parent
WORKTREE = "WORKTREE"
# Borrowed from this checkout by each temporary tree: what bootstrap installed, not tracked.
BORROWED = (".venv", "bench/node/node_modules")


@dataclass(frozen=True)
class Figure:
    """One run's saturation figure for one (server, shape)."""

    tree: str  # "A" or "B"
    run: int
    server: str
    shape: str
    events_per_s: float
    server_us_per_event: float
    redis_us_per_event: float


def abba(pairs: int) -> list[str]:
    """The order of the runs: A B, then B A, then A B... (each pair alternates who goes first)."""
    return [tree for pair in range(pairs) for tree in (("A", "B") if pair % 2 == 0 else ("B", "A"))]


def figures_of(document: dict[str, Any], tree: str, run: int) -> list[Figure]:
    """The saturation figures of one bench/sessions.py JSON document."""
    found = []
    for result in document.get("results", []):
        saturation = result.get("saturation") or {}
        events_per_s = float(saturation.get("events_per_s") or 0.0)
        if events_per_s <= 0:
            continue  # the run failed; its error is in its log
        found.append(
            Figure(
                tree=tree,
                run=run,
                server=str(result["server"]),
                shape=str(result["shape"]),
                events_per_s=events_per_s,
                server_us_per_event=sessions.per_event_us(saturation, "server_cpu_pct") or 0.0,
                redis_us_per_event=sessions.per_event_us(saturation, "redis_cpu_pct") or 0.0,
            )
        )
    return found


def report(figures: list[Figure], labels: dict[str, str]) -> str:
    """Each run, then per (server, shape) the mean of each tree and B against A."""
    lines = [f"{'run':>4} {'tree':<4} {'server':<11} {'shape':<8} {'events/s':>9} {'srv µs/ev':>9} {'redis µs/ev':>11}"]
    for f in figures:
        lines.append(
            f"{f.run:>4} {f.tree:<4} {f.server:<11} {f.shape:<8} {f.events_per_s:>9.0f} "
            f"{f.server_us_per_event:>9.1f} {f.redis_us_per_event:>11.1f}"
        )
    lines.append("")
    for server, shape in dict.fromkeys((f.server, f.shape) for f in figures):
        means = {}
        for tree in ("A", "B"):
            own = [f for f in figures if (f.server, f.shape, f.tree) == (server, shape, tree)]
            if own:
                means[tree] = (
                    statistics.fmean(f.events_per_s for f in own),
                    statistics.fmean(f.server_us_per_event for f in own),
                    len(own),
                    statistics.median(f.server_us_per_event for f in own),  # one odd run moves the mean
                )
        for tree, (events, us, count, median_us) in means.items():
            lines.append(
                f"{server} {shape} {tree} ({labels[tree]}): mean of {count}: {events:,.0f} events/s, {us:.1f} µs/event"
                f" (median {median_us:.1f})"
            )
        if len(means) == 2:
            (a_events, a_us, _, _), (b_events, b_us, _, _) = means["A"], means["B"]
            lines.append(f"{server} {shape} B vs A: events/s {b_events / a_events:.3f}x, µs/event {b_us / a_us:.3f}x")
    return "\n".join(lines)


@contextmanager
def tree_of(revision: str, where: Path) -> Iterator[Path]:
    """A checkout of ``revision`` (this one for WORKTREE), removed afterwards."""
    if revision == WORKTREE:
        yield ROOT
        return
    added = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(where), revision],
        capture_output=True,
        text=True,
    )
    if added.returncode != 0:
        raise SystemExit(f"[ab] cannot check out {revision!r}: {added.stderr.strip()}")
    try:
        for name in BORROWED:
            if (ROOT / name).exists():
                (where / name).symlink_to(ROOT / name)
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], check=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, bench_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", help="revision A (or WORKTREE)")
    parser.add_argument("after", help="revision B (or WORKTREE)")
    parser.add_argument("--pairs", type=int, default=4, help="pairs of runs (default 4: A B B A A B B A)")
    args = parser.parse_args(ours)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    labels = {"A": args.before, "B": args.after}
    figures: list[Figure] = []
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sessionhub-ab-")))
        trees = {tree: stack.enter_context(tree_of(labels[tree], scratch / tree)) for tree in ("A", "B")}
        for run, tree in enumerate(abba(args.pairs), 1):
            out = scratch / f"out-{run}"
            command = [str(ROOT / ".venv" / "bin" / "python"), "bench/sessions.py", *bench_args, "--out", str(out)]
            print(f"[ab] run {run}: {tree} ({labels[tree]})", flush=True)
            done = subprocess.run(command, cwd=trees[tree], capture_output=True, text=True)
            documents = sorted(out.glob("sessions-2*.json")) if out.exists() else []
            if done.returncode != 0 or not documents:
                print(done.stdout[-2000:] + done.stderr[-2000:], file=sys.stderr)
                print(f"[ab] run {run} failed (exit {done.returncode}); the runs before it:", file=sys.stderr)
                print(report(figures, labels))
                return 1
            figures += figures_of(json.loads(documents[-1].read_text()), tree, run)
            shutil.rmtree(out, ignore_errors=True)
    print(report(figures, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
