"""What renewing a node's recording leases costs its event loop: a task per lease, or none.

A node renews every recording lease its connections hold every third of the lease
(``handlers/voice/recording.py``), RENEW_BATCH at a time. Each batch holds the event loop while
its calls are sent and again while their replies are taken, and every event of every other
connection waits that long. This times both ways of renewing the same leases, alternated, on a
private redis-server (free loopback port) through the server's own client
(``storage/lean_redis.py``): a task per renewal (``asyncio.gather`` of ``RecordingLeases.renew``,
as before) and ``RecordingLeases.renew_many`` (every call written at once, only futures awaited).
It prints the wall time of each round and the longest the loop was held meanwhile (a probe that
sleeps 0.5 ms and measures how late it wakes).

    .venv/bin/python bench/lease_renewals.py
    .venv/bin/python bench/lease_renewals.py --leases 2000 --rounds 5

Bounded: ``--rounds`` rounds of ``--leases`` renewals each way.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common.servers import start_redis
from redis.asyncio import BlockingConnectionPool

from handlers.voice.recording import RENEW_BATCH
from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.lean_redis import LeanRedis
from storage.voice.recording import RecordingLeases

HOLDER = "bench-node:sid"
PROBE_S = 0.0005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--leases", type=int, default=1000, help="leases renewed per round (default 1000)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of each way (default 5)")
    p.add_argument("--batch", type=int, default=RENEW_BATCH, help=f"renewals at once (default {RENEW_BATCH})")
    return p.parse_args(argv)


async def _probe(held: list[float], stop: asyncio.Event) -> None:
    """Record how late each short sleep wakes: the longest the loop was held by someone else."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time()
        await asyncio.sleep(PROBE_S)
        held.append(loop.time() - asked - PROBE_S)


async def _round(
    renew: Callable[[list[str]], Awaitable[list[Any]]], ids: list[str], batch: int
) -> tuple[float, float, int]:
    """(wall ms, longest loop hold ms, leases renewed) of renewing ``ids``, ``batch`` at a time."""
    held: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(held, stop))
    await asyncio.sleep(0.01)
    held.clear()
    started = time.perf_counter()
    renewed = 0
    for start in range(0, len(ids), batch):
        renewed += sum(1 for outcome in await renew(ids[start : start + batch]) if outcome is True)
    wall_ms = (time.perf_counter() - started) * 1000
    await asyncio.sleep(0.01)
    stop.set()
    await probe
    return wall_ms, max(held, default=0.0) * 1000, renewed


async def measure(args: argparse.Namespace, redis_url: str) -> None:
    """Hold ``--leases`` leases, then renew them both ways, alternated; print each way's figures."""
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=64, decode_responses=True)
    redis = LeanRedis.from_pool(pool)
    keys, clock = Keys("sh"), Clock()
    log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=1000)
    leases = RecordingLeases(redis=redis, keys=keys, log=log, clock=clock, lease_ms=60_000)
    ids = [f"bench-{n:06d}" for n in range(args.leases)]
    async with redis.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.hset(keys.session(session_id), mapping={"kind": "voice", "status": "recording"})
            pipe.set(keys.voice_recording_lease(session_id), HOLDER, px=600_000)
        await pipe.execute()
    await leases.renew(ids[0], HOLDER)  # the link is open and the script loaded

    async def with_tasks(batch: list[str]) -> list[Any]:
        return await asyncio.gather(*(leases.renew(s, HOLDER) for s in batch), return_exceptions=True)

    async def at_once(batch: list[str]) -> list[Any]:
        return await leases.renew_many([(s, HOLDER) for s in batch])

    ways: dict[str, Callable[[list[str]], Awaitable[list[Any]]]] = {
        "a task per lease": with_tasks,
        "renew_many": at_once,
    }
    figures: dict[str, list[tuple[float, float, int]]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, renew in ways.items():
            figures[name].append(await _round(renew, ids, args.batch))
    for name, rounds in figures.items():
        walls, holds = [r[0] for r in rounds], [r[1] for r in rounds]
        renewed = {r[2] for r in rounds}
        print(
            f"{name:17s} {args.leases} leases in batches of {args.batch}: wall {statistics.median(walls):6.1f} ms "
            f"(median of {len(rounds)}), loop held at most {statistics.median(holds):5.2f} ms (median), "
            f"{max(holds):5.2f} ms (worst); renewed {sorted(renewed)}"
        )
    await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    """Start redis-server, measure, print."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sessionhub-leases-") as tmp:
        redis, url = start_redis(Path(tmp))
        try:
            asyncio.run(measure(args, url))
        finally:
            redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
