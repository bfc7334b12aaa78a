"""bench/sustained.py's search: which fixed-rate windows count as held, and how the rates are probed.

The runs themselves are smoke-tested against a real server in tests/test_bench_sessions.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # the benchmark's modules import each other from there

import sustained  # noqa: E402

HELD = {"events_per_s": 1000.0, "missing": 0, "error_acks": 0, "published_per_event": 1.0, "delivery": {"p99_ms": 12.0}}


def test_a_window_is_held_only_with_every_event_committed_published_and_delivered_in_time() -> None:
    def why(**change: object) -> list[str]:
        return sustained.held({**HELD, **change}, 1000.0, p99_ms=100.0, min_published=0.97)

    assert why() == []
    assert why(events_per_s=900.0) == ["committed 900/s"]
    assert why(missing=3) == ["missing 3, errors 0"]
    assert why(error_acks=1) == ["missing 0, errors 1"]
    assert why(published_per_event=0.1) == ["pub/ev 0.1"]  # node's adapter at saturation
    assert why(published_per_event=None) == ["pub/ev None"]  # the probe saw nothing
    assert why(delivery={"p99_ms": 250.0}) == ["delivery p99 250.0 ms"]
    assert sustained.held({}, 1000.0, p99_ms=100.0, min_published=0.97) == ["no figures"]


def test_the_search_doubles_while_held_then_halves_the_gap() -> None:
    limit = 5000.0  # a server that holds up to this rate

    def probe(rate: float) -> list[str]:
        return [] if rate <= limit else ["too fast"]

    best, worst, tried = sustained.search(probe, start=1000.0, steps=8)
    rates = [p["rate"] for p in tried]
    assert rates[:4] == [1000.0, 2000, 4000, 8000]
    assert rates[4:] == [6000, 5000, 5500, 5200]
    assert (best, worst) == (5000, 5200)
    assert all(p["held"] == (p["rate"] <= limit) for p in tried)


def test_the_search_stops_when_no_rate_is_left_between_held_and_not_held() -> None:
    best, worst, tried = sustained.search(lambda rate: [] if rate <= 150 else ["no"], start=100.0, steps=10)
    assert (best, worst) == (100.0, 200)
    assert [p["rate"] for p in tried] == [100.0, 200]


def test_a_server_that_holds_nothing_has_zero_held() -> None:
    best, worst, tried = sustained.search(lambda rate: ["no"], start=400.0, steps=3)
    assert best == 0.0 and worst == 100
    assert [p["rate"] for p in tried] == [400.0, 200, 100]
