"""A big stream's whole read: how long Redis is held, and what the read and the moments cost.

Self-contained: starts a private redis-server on a free loopback port, makes a stream session
through ``StreamSessions`` (created, started) and writes ``--clips`` clips into its clips hash by
pipeline (as submit.lua leaves them). Then, ``--runs`` times:

- ``StreamSessions.clips`` (what GET /clips, GET /moments and every export read first), timed
  wall and CPU of this process;
- the moments grouping of what it read (``grouped_moments``, by time);
- the same reader's next read with nothing changed, and its next after ``--late`` clicks (a
  process keeps a big stream's read and brings it forward by the log: ``clips_cache.py``);
- the review index built anew (``review_build.lua``), and the longest command of its build;
- while the read runs, a probe on its own connection PINGs Redis back to back: its slowest
  answer is what another session on the node waited at worst.

With ``slowlog-log-slower-than 0`` every command the reads ran is in SLOWLOG: the longest of
them, and the commands over 5 ms, are printed. Run: ``.venv/bin/python bench/big_stream.py``
(``--clips 200000 --runs 3``). The redis-server it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common.servers import start_redis  # noqa: E402
from handlers.streams.moments import grouped_moments  # noqa: E402
from storage.clock import Clock  # noqa: E402
from storage.events import EventLog  # noqa: E402
from storage.keys import Keys  # noqa: E402
from storage.scripts import Scripts  # noqa: E402
from storage.sessions import SessionDirectory  # noqa: E402
from storage.store import Store  # noqa: E402
from storage.streams.records import StreamSession  # noqa: E402
from storage.streams.repository import StreamSessions, ViewerCaps  # noqa: E402


def clip(seq: int) -> dict[str, Any]:
    """A clip as submit.lua stores it: a click every 0.7 s of one segment."""
    return {
        "clip_id": str(uuid.uuid4()),
        "segment_index": 1,
        "offset_ms": seq * 700,
        "stream_offset_ms": seq * 700,
        "note": f"moment {seq}",
        "submitted_by": f"viewer{seq % 2000}",
        "viewer_tag": f"{seq % 2000:012x}",
        "seq": seq,
        "clipped": seq % 3 == 0,
        "created_at": 1_700_000_000_000 + seq,
    }


def probe(url: str, stop: Any, worst: Any) -> None:
    """The slowest PING answer (ms) until ``stop`` is set, in a process of its own: neither this
    event loop nor this process's GIL (the read's parsing) is in its figure, only Redis."""
    redis = SyncRedis.from_url(url, decode_responses=True)
    while not stop.is_set():
        started = time.perf_counter()
        redis.ping()
        worst.value = max(worst.value, (time.perf_counter() - started) * 1000)
        time.sleep(0.001)
    redis.close()


def store_on(redis: Redis) -> Store:
    """The server's store on ``redis`` (key prefix "sh"), without a server."""
    keys = Keys("sh")
    clock = Clock()
    return Store(
        redis=redis,
        keys=keys,
        scripts=Scripts.load(redis),
        log=EventLog(redis=redis, keys=keys, clock=clock, maxlen=1000),
        clock=clock,
        sessions=SessionDirectory(redis=redis, keys=keys, clock=clock, orphan_days=30),
    )


async def live_stream(streams: StreamSessions) -> StreamSession:
    """alice's stream, started."""
    session = await streams.create(owner_id="alice", title="Raid night", game="", viewer_delay_s=0)
    await streams.transition(session.id, "start", "alice")
    return session


async def run(url: str, clips: int, runs: int, late: int) -> dict[str, Any]:
    redis = Redis.from_url(url, decode_responses=True)
    store = store_on(redis)
    keys = store.keys
    streams = StreamSessions(store)
    session = await live_stream(streams)
    key = keys.stream_clips(session.id)
    for start in range(0, clips, 10_000):
        async with redis.pipeline(transaction=False) as pipe:
            for seq in range(start + 1, min(start + 10_000, clips) + 1):
                c = clip(seq)
                pipe.hset(key, c["clip_id"], json.dumps(c))
            await pipe.execute()
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.config_set("slowlog-max-len", 100_000)
    figures: dict[str, Any] = {"clips": clips, "runs": []}
    for _ in range(runs):
        await redis.slowlog_reset()
        stop, worst = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
        probing = multiprocessing.Process(target=probe, args=(url, stop, worst), daemon=True)
        probing.start()
        await asyncio.sleep(0.05)
        reader = StreamSessions(store)  # a process that never read this stream
        wall, cpu = time.perf_counter(), time.process_time()
        _, read, position = await reader.clips(session.id)
        read_wall, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        moments = await grouped_moments(read, window_s=10, sort="time")
        moments_wall, moments_cpu = time.perf_counter() - wall, time.process_time() - cpu
        stop.set()
        await asyncio.to_thread(probing.join, 10)
        worst_ping = worst.value
        log: Any = await redis.slowlog_get(100_000)
        ours = [e for e in log if not str(e["command"]).startswith(("PING", "SLOWLOG", "b'PING", "b'SLOWLOG"))]
        longest = max(ours, key=lambda e: e["duration"])
        # The dashboard's next reads: nothing changed, then after `--late` more clicks.
        wall, cpu = time.perf_counter(), time.process_time()
        _, unchanged, _ = await reader.clips(session.id)
        same_wall, same_cpu = time.perf_counter() - wall, time.process_time() - cpu
        for n in range(late):
            await streams.submit(
                session.id,
                viewer_id=f"late{n}",
                submission_id=uuid.uuid4().hex,
                note="",
                cooldown_ms=0,
                max_clips=10_000_000,
                caps=ViewerCaps(per_viewer=1000, per_address=1000),
            )
        wall, cpu = time.perf_counter(), time.process_time()
        _, later, _ = await reader.clips(session.id)
        late_wall, late_cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert len(unchanged) == len(read) and len(later) == len(read) + late
        # The paged review's index built anew (as after a day unread), a page of clips a call.
        await redis.delete(keys.stream_review_index(session.id))
        await redis.slowlog_reset()
        wall = time.perf_counter()
        await reader.review.summary(session.id, [1], last=0)
        build_wall = time.perf_counter() - wall
        built: Any = [e for e in await redis.slowlog_get(100_000) if "SLOWLOG" not in str(e["command"])]
        build_longest = max(built, key=lambda e: e["duration"])
        figures["runs"].append(
            {
                "read_ms": round(read_wall * 1000),
                "read_cpu_ms": round(read_cpu * 1000),
                "moments_ms": round(moments_wall * 1000),
                "moments_cpu_ms": round(moments_cpu * 1000),
                "clips_read": len(read),
                "moments": len(moments),
                "position": position.offset,
                "redis_commands": len(ours),
                "longest_command_ms": round(longest["duration"] / 1000, 2),
                "longest_command": str(longest["command"])[:40],
                "commands_over_5ms": sum(1 for e in ours if e["duration"] > 5000),
                "worst_ping_ms": round(worst_ping, 2),
                "next_read_unchanged_ms": round(same_wall * 1000, 1),
                "next_read_unchanged_cpu_ms": round(same_cpu * 1000, 1),
                f"next_read_after_{late}_clips_ms": round(late_wall * 1000, 1),
                f"next_read_after_{late}_clips_cpu_ms": round(late_cpu * 1000, 1),
                "review_build_ms": round(build_wall * 1000),
                "review_build_longest_command_ms": round(build_longest["duration"] / 1000, 2),
                "review_build_longest_command": str(build_longest["command"])[:40],
            }
        )
    await redis.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clips", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--late", type=int, default=100, help="clicks between a read and the next")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        child, url = start_redis(Path(workdir), core=None)
        try:
            figures = asyncio.run(run(url, options.clips, options.runs, options.late))
        finally:
            child.stop()
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
