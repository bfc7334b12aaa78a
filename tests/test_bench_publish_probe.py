"""bench/common/publish_probe.py: what reached Redis' bus within a benchmark window.

bench/sessions.py reads with it how many of a window's committed events were published to
Redis by the window's end, and how the server's memory grew meanwhile: node socket.io's Redis
adapter queues its publishes when its loop is saturated (bench/README.md, ninth round), which
its committed-events figure alone does not show.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from tests.helpers import RedisProcess

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # the benchmark's modules import each other from there

from common import publish_probe  # noqa: E402
from common.publish_probe import PublishProbe  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def test_the_probe_counts_every_publish_that_reaches_redis(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    try:
        client = SyncRedis(port=redis.port)
        client.eval("redis.call('PUBLISH', 'c', 'in a script')", 0)  # counted as a PUBLISH too
        with PublishProbe(redis.port, os.getpid(), interval_s=0.01) as probe:
            deadline = time.monotonic() + 10
            while not probe.samples and time.monotonic() < deadline:
                time.sleep(0.01)
            for n in range(40):
                client.publish("c", n)
            client.eval("for i = 1, 10 do redis.call('PUBLISH', 'c', i) end", 0)
        client.close()
    finally:
        redis.stop()
    assert probe.error is None, probe.error
    first, last = probe.samples[0], probe.samples[-1]
    assert first[1] == 1 and last[1] == 51, probe.samples
    assert last[0] > first[0] and last[2] > 0  # monotonic seconds, and this process's RSS in KiB


def _samples() -> list[tuple[float, int, int]]:
    # 10 s at 100 publishes/s while the server's memory grows 1 MiB/s
    return [(100.0 + t / 10, 10 * t, 50_000 + 1024 * t // 10) for t in range(101)]


def test_a_window_says_what_share_of_its_events_was_published_and_the_memory_grown() -> None:
    # 1,000 events committed per second of the window, 100 of them published: a queue behind
    block = {"t0_s": 102.55, "t1_s": 107.55, "events": 5000}
    assert publish_probe.window(_samples(), block) == {
        "published": 500,
        "published_per_event": 0.1,
        "server_rss_growth_mb": 5.0,
        "edge_spans_s": 0.2,  # samples 0.1 s apart around both edges
    }


def test_a_window_says_how_far_apart_the_samples_around_its_edges_are() -> None:
    # The sampler was late around the window's start (a busy machine): 0.6 s between two samples.
    samples = [s for s in _samples() if not 102.0 < s[0] < 102.6]
    window = publish_probe.window(samples, {"t0_s": 102.55, "t1_s": 107.55, "events": 5000})
    assert window["edge_spans_s"] == 0.7


def test_a_window_outside_the_samples_says_nothing() -> None:
    samples = _samples()
    assert publish_probe.window(samples, {"t0_s": 99.0, "t1_s": 105.0, "events": 10}) == {}
    assert publish_probe.window(samples, {"t0_s": 105.0, "t1_s": 111.0, "events": 10}) == {}
    assert publish_probe.window(samples, {"events": 10}) == {}  # a generator that gave no bounds
    assert publish_probe.window(samples, {"t0_s": 101.0, "t1_s": 102.0, "events": 0})["published_per_event"] is None
