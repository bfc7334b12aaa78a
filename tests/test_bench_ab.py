"""bench/ab.py: the ABBA order of the runs, the figures read from bench/sessions.py's JSON, and
the means it reports. Its runs are bench/sessions.py's (smoke-tested in tests/test_bench_sessions.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # the benchmark's modules import each other from there

import ab  # noqa: E402


def test_each_pair_alternates_which_tree_runs_first() -> None:
    assert ab.abba(1) == ["A", "B"]
    assert ab.abba(4) == ["A", "B", "B", "A", "A", "B", "B", "A"]
    order = ab.abba(6)
    assert order.count("A") == order.count("B") == 6
    # every position of a pair is held by each tree equally often: a drift or a first-run
    # penalty falls on both
    assert [order[i] for i in range(0, 12, 2)].count("A") == 3


def _document(*results: dict[str, object]) -> dict[str, object]:
    return {"when": "now", "results": list(results)}


def _result(server: str, events_per_s: float, server_pct: float, redis_pct: float) -> dict[str, object]:
    saturation = {"events_per_s": events_per_s, "server_cpu_pct": server_pct, "redis_cpu_pct": redis_pct}
    return {"server": server, "shape": "1000x2", "saturation": saturation}


def test_figures_are_cpu_per_committed_event_and_a_failed_run_gives_none() -> None:
    document = _document(_result("sessionhub", 10_000.0, 100.0, 20.0), _result("node", 0.0, 0.0, 0.0))
    (figure,) = ab.figures_of(document, "B", 3)
    assert (figure.tree, figure.run, figure.server, figure.shape) == ("B", 3, "sessionhub", "1000x2")
    assert figure.events_per_s == 10_000.0
    assert figure.server_us_per_event == 100.0  # a whole core for 10,000 events/s
    assert figure.redis_us_per_event == 20.0
    assert ab.figures_of(_document(), "A", 1) == []


def test_the_report_gives_each_trees_mean_and_b_against_a() -> None:
    figures = [
        *ab.figures_of(_document(_result("sessionhub", 10_000.0, 100.0, 20.0)), "A", 1),
        *ab.figures_of(_document(_result("sessionhub", 12_500.0, 100.0, 20.0)), "B", 2),
        *ab.figures_of(_document(_result("sessionhub", 12_500.0, 100.0, 20.0)), "B", 3),
        *ab.figures_of(_document(_result("sessionhub", 15_000.0, 100.0, 20.0)), "A", 4),
    ]
    text = ab.report(figures, {"A": "HEAD~1", "B": "WORKTREE"})
    assert "sessionhub 1000x2 A (HEAD~1): mean of 2: 12,500 events/s, 83.3 µs/event" in text
    assert "sessionhub 1000x2 B (WORKTREE): mean of 2: 12,500 events/s, 80.0 µs/event" in text
    assert "sessionhub 1000x2 B vs A: events/s 1.000x, µs/event 0.960x" in text
    assert "83.3 µs/event (median 83.3)" in text and "80.0 µs/event (median 80.0)" in text
    assert len(text.splitlines()) == 1 + 4 + 1 + 3  # header, four runs, a blank line, the summary


def test_the_median_is_not_moved_by_one_odd_run() -> None:
    figures = [
        figure
        for run, events in enumerate((10_000.0, 10_000.0, 25_000.0), 1)
        for figure in ab.figures_of(_document(_result("sessionhub", events, 100.0, 20.0)), "A", run)
    ]
    text = ab.report(figures, {"A": "HEAD", "B": "WORKTREE"})
    assert "mean of 3: 15,000 events/s, 80.0 µs/event (median 100.0)" in text
    assert "B vs A" not in text  # one tree only: nothing to compare
