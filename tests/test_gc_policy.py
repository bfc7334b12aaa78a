"""The garbage collector's pauses are timed and the long ones logged (server/gc_policy.py)."""

from __future__ import annotations

import gc
import logging

import pytest

from server.gc_policy import PauseWatch, watch_pauses

# These tests run the collector: what earlier tests left to it must not fail them.
pytestmark = pytest.mark.usefixtures("collected_first")


def test_a_collection_at_or_over_the_bound_is_logged_with_its_length(caplog: pytest.LogCaptureFixture) -> None:
    watch = PauseWatch(0.0).install()  # every collection is "long"
    try:
        with caplog.at_level(logging.WARNING, logger="server.gc_policy"):
            gc.collect()
    finally:
        watch.uninstall()
    assert watch.collections[2] == 1 and watch.longest_ms[2] > 0
    [record] = [r for r in caplog.records if r.name == "server.gc_policy"]
    assert "generation 2 garbage collection held the event loop" in record.getMessage()
    assert record.__dict__["duration_ms"] >= 0
    assert watch._callback not in gc.callbacks


def test_short_collections_are_timed_but_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    watch = PauseWatch(60_000.0).install()
    try:
        with caplog.at_level(logging.WARNING, logger="server.gc_policy"):
            gc.collect(0)
    finally:
        watch.uninstall()
    assert watch.collections[0] >= 1
    assert not [r for r in caplog.records if r.name == "server.gc_policy"]


def test_zero_watches_nothing() -> None:
    assert watch_pauses(0) is None
