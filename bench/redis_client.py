"""What one Redis command costs the server in CPU: redis-py's pool against storage.lean_redis.

    .venv/bin/python bench/redis_client.py [--n 5000]

A private redis-server on a free loopback port; the server's client as ``serve`` builds it
(``connect_redis``: a blocking pool with a health check, and the lean link under it) and plain
redis-py on the same pool settings. Each runs, one after another and then 64 at a time, the
three commands every subscription and change makes: an ``HMGET`` (the kind lookup), a read
``MULTI`` (a snapshot) and an ``EVALSHA``. Prints microseconds of this process's CPU per
command (``time.process_time``). Loopback only; bounded; the redis-server is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from common.servers import start_redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis.asyncio import BlockingConnectionPool, Redis

from server.services import connect_redis


def redis_py(url: str) -> Redis:
    """Plain redis-py with the pool settings ``connect_redis`` uses."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=512, timeout=5, decode_responses=True, socket_connect_timeout=5, health_check_interval=30
    )
    return Redis.from_pool(pool)


async def cpu_us(call: Callable[[], Awaitable[Any]], n: int, in_flight: int) -> float:
    """CPU microseconds per call, ``in_flight`` calls at a time."""
    for _ in range(200):
        await call()

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    started = time.process_time()
    await asyncio.gather(*(worker(n // in_flight) for _ in range(in_flight)))
    return 1e6 * (time.process_time() - started) / (n // in_flight * in_flight)


async def measure(client: Redis, n: int) -> dict[str, float]:
    """The three commands, sequential and 64 in flight."""
    await client.hset("sh:{s}:session", mapping={"kind": "voice", "owner_id": "u", "created_at": "1"})
    script = client.register_script("return redis.call('HINCRBY', KEYS[1], 'n', 1)")

    async def hmget() -> Any:
        return await client.hmget("sh:{s}:session", "kind", "owner_id", "created_at")

    async def multi() -> Any:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hgetall("sh:{s}:session")
            pipe.hmget("sh:{s}:log_meta", "epoch", "offset")
            return await pipe.execute()

    async def evalsha() -> Any:
        return await script(keys=["sh:{s}:count"])

    figures: dict[str, float] = {}
    for name, call in (("HMGET", hmget), ("MULTI read", multi), ("EVALSHA", evalsha)):
        figures[f"{name} x1"] = await cpu_us(call, n, 1)
        figures[f"{name} x64"] = await cpu_us(call, n, 64)
    return figures


async def run(url: str, n: int) -> None:
    rows: dict[str, dict[str, float]] = {}
    for label, make in (("redis-py pool", redis_py), ("connect_redis (lean)", connect_redis)):
        client = make(url)
        try:
            rows[label] = await measure(client, n)
        finally:
            await client.aclose()
    names = list(next(iter(rows.values())))
    print(f"\nCPU per command, us (n = {n}; x64 = 64 in flight)")
    print(f"{'':22}" + "".join(f"{name:>16}" for name in names))
    for label, figures in rows.items():
        print(f"{label:22}" + "".join(f"{figures[name]:16.1f}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="commands per figure (bounded: at most 100,000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = start_redis(Path(tmp))
        try:
            asyncio.run(asyncio.wait_for(run(url, min(args.n, 100_000)), 600))
        finally:
            redis.stop()


if __name__ == "__main__":
    main()
