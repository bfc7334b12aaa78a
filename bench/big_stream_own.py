"""A viewer's own clips on a big stream: how long their read and the owner's clear hold Redis.

Self-contained: starts a private redis-server on a free loopback port, makes a stream session
through ``StreamSessions`` (created, started) and writes ``--clips`` clips into its clips hash by
pipeline, as submit.lua leaves them (with the per-viewer counts beside them): ``--few`` of them
a fan's, ``--many`` a raider's, the rest 2,000 other viewers'. Then, ``--runs`` times:

- ``StreamSessions.own_clips`` (``GET …/clips/mine``) of the fan and of the raider, twice each
  (the first read of a stream whose clips were written without the per-viewer index pays for
  building it: ``first_*``);
- ``StreamSessions.clear_viewer`` (``clip_clear_viewer``) of the fan, then of the raider; their
  clips are written again before the next run.

For each: its wall time, the Redis commands it ran (INFO commandstats: a script's call counts
once, the commands it runs inside count too), the longest of them (SLOWLOG of every command of
1 ms or more: logging every command, a script's inner ones each an entry, made a 400-clip page
take several times as long) and the slowest answer a probe on its own connection (in a process of
its own) got to PINGs sent back to back meanwhile: what any other session on the node waited at
worst. Run: ``.venv/bin/python bench/big_stream_own.py`` (``--clips 200000 --runs 3``). The
redis-server it starts is stopped by its pid.
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
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from big_stream import live_stream, probe, store_on  # noqa: E402
from common.servers import start_redis  # noqa: E402
from storage.keys import Keys  # noqa: E402
from storage.streams.repository import StreamSessions  # noqa: E402


def tag_of(salt: str, viewer: str) -> str:
    """The viewer's tag in the session, as submit.lua makes it."""
    import hashlib

    return hashlib.sha1(f"{salt}|{viewer}".encode()).hexdigest()[:12]


async def write_clips(redis: Redis, keys: Keys, session_id: str, viewers: list[tuple[str, int]], seq: int) -> int:
    """Write each viewer's clips (a click every 0.7 s of segment 1) as submit.lua leaves them:
    the clip, the session's count and seq, the viewer's count and ids of their clips. The next seq."""
    salt = str(await redis.hget(keys.session(session_id), "tag_salt"))
    clips_key, counts_key = keys.stream_clips(session_id), keys.stream_clip_counts(session_id)
    for viewer, count in viewers:
        tag = tag_of(salt, viewer)
        ids: list[str] = []
        for start in range(0, count, 10_000):
            async with redis.pipeline(transaction=False) as pipe:
                for _ in range(start, min(start + 10_000, count)):
                    seq += 1
                    clip_id = str(uuid.uuid4())
                    ids.append(clip_id)
                    clip = {
                        "clip_id": clip_id,
                        "segment_index": 1,
                        "offset_ms": seq * 700,
                        "stream_offset_ms": seq * 700,
                        "note": f"moment {seq}",
                        "submitted_by": viewer,
                        "viewer_tag": tag,
                        "seq": seq,
                        "clipped": seq % 3 == 0,
                        "created_at": 1_700_000_000_000 + seq,
                    }
                    pipe.hset(clips_key, clip_id, json.dumps(clip))
                await pipe.execute()
        # What the previous release's submit.lua kept beside the count (its own_clips.lua read it).
        await redis.hincrby(counts_key, f"u:{viewer}", count)
        # Never shortened (a cleared clip's id stayed): the ids written now go after the earlier ones.
        earlier = str(await redis.hget(counts_key, f"c:{viewer}") or "")
        await redis.hset(counts_key, f"c:{viewer}", earlier + "".join(i + " " for i in ids))
    held = await redis.hlen(clips_key)
    await redis.hset(keys.session(session_id), mapping={"clip_count": held, "clip_seq": seq})
    return seq


async def _calls(redis: Redis) -> int:
    """Commands Redis ran so far, but the probe's PINGs and the bench's own INFO and SLOWLOG."""
    stats: Any = await redis.info("commandstats")
    ours = (name for name in stats if not name.startswith(("cmdstat_ping", "cmdstat_info", "cmdstat_slowlog")))
    return sum(int(stats[name]["calls"]) for name in ours)


async def measured(redis: Redis, url: str, step: Callable[[], Awaitable[Any]]) -> tuple[Any, dict[str, Any]]:
    """Run ``step`` with its commands of 1 ms or more logged and a PING probe beside it: its answer
    and figures."""
    await redis.slowlog_reset()
    before = await _calls(redis)
    stop, worst = multiprocessing.Event(), multiprocessing.Value("d", 0.0)
    probing = multiprocessing.Process(target=probe, args=(url, stop, worst), daemon=True)
    probing.start()
    await asyncio.sleep(0.05)
    wall = time.perf_counter()
    answer = await step()
    took = time.perf_counter() - wall
    await asyncio.sleep(0.01)
    stop.set()
    await asyncio.to_thread(probing.join, 10)
    calls = await _calls(redis) - before
    log: Any = await redis.slowlog_get(1_000_000)
    ours = [e for e in log if not str(e["command"]).startswith(("PING", "SLOWLOG", "b'PING", "b'SLOWLOG"))]
    none: dict[str, Any] = {"duration": 0, "command": "(none of 1 ms)"}
    longest = max(ours, key=lambda e: e["duration"], default=none)
    return answer, {
        "ms": round(took * 1000, 1),
        "redis_commands": calls,
        "longest_command_ms": round(longest["duration"] / 1000, 2),
        "longest_command": str(longest["command"])[:48],
        "commands_over_5ms": sum(1 for e in ours if e["duration"] > 5000),
        "worst_ping_ms": round(worst.value, 2),
    }


async def run(url: str, clips: int, few: int, many: int, runs: int) -> dict[str, Any]:
    redis = Redis.from_url(url, decode_responses=True)
    store = store_on(redis)
    keys = store.keys
    streams = StreamSessions(store)
    session = await live_stream(streams)
    others = [(f"viewer{n}", (clips - few - many) // 2000) for n in range(2000)]
    seq = await write_clips(redis, keys, session.id, others, 0)
    await redis.config_set("slowlog-log-slower-than", 1000)
    await redis.config_set("slowlog-max-len", 1_000_000)
    figures: dict[str, Any] = {"clips": clips, "few": few, "many": many, "runs": []}
    for _ in range(runs):
        await redis.config_set("slowlog-log-slower-than", -1)
        seq = await write_clips(redis, keys, session.id, [("fan", few), ("raider", many)], seq)
        await redis.config_set("slowlog-log-slower-than", 1000)
        held = await redis.hlen(keys.stream_clips(session.id))
        figure: dict[str, Any] = {"clips_held": held}
        for name, viewer, expected in (
            ("first_own_read_few", "fan", few),
            ("own_read_few", "fan", few),
            ("first_own_read_many", "raider", many),
            ("own_read_many", "raider", many),
        ):
            own, figure[name] = await measured(redis, url, partial(streams.own_clips, session.id, viewer, limit=200))
            assert len(own.clips) == min(expected, 200), (name, len(own.clips))
        for name, viewer, expected in (("clear_few", "fan", few), ("clear_many", "raider", many)):
            clear = partial(streams.clear_viewer, session.id, viewer, "alice")
            cleared, figure[name] = await measured(redis, url, clear)
            assert cleared.removed == expected, (name, cleared.removed)
        assert await redis.hlen(keys.stream_clips(session.id)) == held - few - many
        figures["runs"].append(figure)
    await redis.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clips", type=int, default=200_000, help="clips of the stream, the two viewers' included")
    parser.add_argument("--few", type=int, default=10, help="the fan's clips")
    parser.add_argument("--many", type=int, default=50_000, help="the raider's clips")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        child, url = start_redis(Path(workdir), core=None)
        try:
            figures = asyncio.run(run(url, options.clips, options.few, options.many, options.runs))
        finally:
            child.stop()
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
