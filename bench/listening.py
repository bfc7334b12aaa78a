"""Listening benchmark: N listeners reporting ``playing`` every few seconds, with pauses.

Self-contained: starts a private redis-server on a free loopback port and ``python -m server
serve`` against it, connects N raw Engine.IO/Socket.IO WebSocket clients (one user each),
lets each report ``playing`` every ``--interval-s`` for ``--duration-s`` with one pause of
10-40 s (resumed within the window), then stops. Prints Redis writes per second (INFO
commandstats before/after: what the throttle saves), ack latencies and Redis memory per
listening session. Every loop is bounded in count and time.

    .venv/bin/python bench/listening.py                      # 1000 listeners, 5 s reports, 60 s
    .venv/bin/python bench/listening.py --quick              # 200 listeners, 20 s
    .venv/bin/python bench/listening.py --time-scale 5       # everything 5x faster (throttle too)

``--time-scale K`` divides the report interval, the pauses, the run and the server's throttle,
window and silence by K: the same run in 1/K of the time; per-second figures are then also
given per simulated second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.figures import percentile_upper as percentile  # noqa: E402
from common.figures import print_json  # noqa: E402
from common.servers import Child, Server, mint_token, start_redis, start_server  # noqa: E402
from common.wire_client import WireClient  # noqa: E402
from procstat import cpu_seconds as cpu_s  # noqa: E402
from storage.keys import Keys  # noqa: E402

# Commands that change data (PUBLISH is counted apart: it stores nothing).
WRITE_COMMANDS = {
    "hset",
    "hdel",
    "hincrby",
    "zadd",
    "zrem",
    "zincrby",
    "xadd",
    "xtrim",
    "set",
    "del",
    "incr",
    "expire",
    "hsetnx",
    "setnx",
    "unlink",
    "zremrangebyscore",
}
DEADLINE_S = 600
KEYS = Keys()  # the server runs with the default key prefix  # no run lasts longer than this, whatever the options


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # monotonic send time of each latency
    actions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Listener:
    """One user on one raw Socket.IO WebSocket connection, and its listening history's id."""

    client: WireClient
    history_id: str = ""

    async def close(self) -> None:
        await self.client.close()


async def open_listener(http: aiohttp.ClientSession, url: str, token: str) -> Listener:
    client = WireClient(http, url, token)
    await client.connect()
    ack = await client.call("listening_history", {})
    return Listener(client, ack["session_id"])


async def play(listener: Listener, index: int, args: argparse.Namespace, stats: Stats, start: float) -> None:
    """Report ``playing`` every interval, pause once for 10-40 s (scaled), then stop."""
    scale = args.time_scale
    interval = args.interval_s / scale
    rng = random.Random(index)
    item = f"item-{index % 50}"
    # Each listener pauses, resumes and stops at its own moments: a real audience does not
    # press buttons in unison (a burst would measure the burst, not the listening).
    end = start + args.duration_s / scale + rng.uniform(0, interval)
    pause_at = start + rng.uniform(0.2, 0.4) * args.duration_s / scale
    pause_for = min(rng.uniform(10, 40) / scale, rng.uniform(0.5, 1.0) * max(0.0, end - interval - pause_at))
    await asyncio.sleep(rng.uniform(0, interval))
    meta: dict[str, Any] | None = {"title": f"Item {index % 50}", "artist": "Bench"}
    paused = False
    while time.monotonic() < end:
        now = time.monotonic()
        if not paused and now >= pause_at:
            await report(listener, item, "paused", stats)
            paused = True
            await asyncio.sleep(pause_for)
            continue
        await report(listener, item, "playing", stats, meta)
        meta = None
        await asyncio.sleep(interval)
    await report(listener, item, "stopped", stats)


async def report(listener: Listener, item: str, status: str, stats: Stats, meta: dict[str, Any] | None = None) -> None:
    payload: dict[str, Any] = {
        "session_id": listener.history_id,
        "item_id": item,
        "status": status,
        "device_id": "bench",
    }
    if meta:
        payload["item"] = meta
    sent = time.perf_counter()
    try:
        ack = dict(await listener.client.call("listening_report", payload))
    except TimeoutError:
        stats.errors["timeout"] += 1
        return
    stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
    stats.sent_at.append(time.monotonic())
    if ack.get("ok"):
        stats.actions[ack["action"]] += 1
    else:
        stats.errors[str(ack.get("error"))] += 1


async def command_stats(redis: Redis) -> dict[str, int]:
    info = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in info.items()}


def timeline(stats: Stats, start: float) -> dict[str, float]:
    """ack p99 per 10-second window of the run (where a tail comes from)."""
    buckets: dict[int, list[float]] = {}
    for at, ms in zip(stats.sent_at, stats.latencies_ms, strict=True):
        buckets.setdefault(int((at - start) // 10), []).append(ms)
    return {f"{k * 10}-{k * 10 + 10}s": round(percentile(v, 0.99), 1) for k, v in sorted(buckets.items())}


async def listening_bytes(redis: Redis, history_ids: list[str]) -> tuple[int, int, int]:
    """(bytes of listening keys, bytes of the history logs, listening sessions) for a sample."""
    data = log = sessions = 0
    for h in history_ids:
        for key in (
            KEYS.session(h),
            KEYS.listening_records(h),
            KEYS.listening_by_start(h),
            KEYS.listening_by_item(h),
            KEYS.listening_items(h),
            KEYS.listening_meta(h),
            KEYS.listening_open(h),
            KEYS.listening_last(h),
            KEYS.listening_stats(h),
            KEYS.listening_clients(h),
        ):
            data += int(await redis.memory_usage(key) or 0)
        for key in (KEYS.log(h), KEYS.log_meta(h)):
            log += int(await redis.memory_usage(key) or 0)
        sessions += int(await redis.hlen(KEYS.listening_records(h)))
    return data, log, sessions


def start_processes(workdir: Path, args: argparse.Namespace) -> tuple[Child, Server, str]:
    """redis-server and sessionhub with the run's (scaled) listening settings."""
    redis, redis_url = start_redis(workdir, core=None)
    scale = args.time_scale
    settings = {
        "SESSIONHUB_LISTENING_THROTTLE_S": str(args.throttle_s / scale),
        "SESSIONHUB_LISTENING_WINDOW_S": str(300 / scale),
        "SESSIONHUB_LISTENING_SILENCE_S": str(args.silence_s / scale),
    }
    try:
        return redis, start_server(workdir, redis_url, settings=settings, data_dir=workdir), redis_url
    except BaseException:
        redis.stop()
        raise


async def connect_all(http: aiohttp.ClientSession, url: str, n: int, concurrency: int) -> list[Listener]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Listener:
        token = mint_token(f"bench-{i}")
        async with gate:
            return await open_listener(http, url, token)

    return list(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=120))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="listening-bench-") as tmp:
        redis_proc, server, redis_url = start_processes(Path(tmp), args)
        url = server.url
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as http:
                memory_before = int((await redis.info("memory"))["used_memory"])
                connect_started = time.monotonic()
                listeners = await connect_all(http, url, args.n, args.concurrency)
                connect_s = time.monotonic() - connect_started
                before = await command_stats(redis)
                cpu_before = cpu_s(server.child.pid), cpu_s(redis_proc.pid)
                stats = Stats()
                started = time.monotonic()
                await asyncio.wait_for(
                    asyncio.gather(*(play(lis, i, args, stats, started) for i, lis in enumerate(listeners))),
                    timeout=args.duration_s / args.time_scale + 60,
                )
                elapsed_s = time.monotonic() - started
                after = await command_stats(redis)
                cpu_after = cpu_s(server.child.pid), cpu_s(redis_proc.pid)
                load_1min = os.getloadavg()[0]
                memory_after = int((await redis.info("memory"))["used_memory"])
                sample = [lis.history_id for lis in listeners[: min(100, len(listeners))]]
                data_bytes, log_bytes, sample_sessions = await listening_bytes(redis, sample)
                total_sessions = 0
                for lis in listeners:
                    total_sessions += int(await redis.hlen(KEYS.listening_records(lis.history_id)))
                for lis in listeners:
                    await lis.close()
        finally:
            await redis.aclose()
            server.child.stop(15)
            redis_proc.stop(10)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    writes = sum(calls for name, calls in delta.items() if name in WRITE_COMMANDS)
    reports = len(stats.latencies_ms)
    return {
        "listeners": args.n,
        "interval_s": args.interval_s,
        "throttle_s": args.throttle_s,
        "time_scale": args.time_scale,
        "connect_s": round(connect_s, 1),
        "elapsed_s": round(elapsed_s, 1),
        "reports": reports,
        "reports_per_s": round(reports / elapsed_s, 1),
        "actions": dict(stats.actions),
        "errors": dict(stats.errors),
        "redis_write_commands_per_s": round(writes / elapsed_s, 1),
        "redis_write_commands_per_report": round(writes / max(reports, 1), 2),
        "redis_publish_per_s": round(delta.get("publish", 0) / elapsed_s, 1),
        "redis_evalsha_per_s": round(delta.get("evalsha", 0) / elapsed_s, 1),
        "redis_commands_per_s": round(sum(delta.values()) / elapsed_s, 1),
        "server_cpu_ms_per_report": round((cpu_after[0] - cpu_before[0]) * 1000 / max(reports, 1), 3),
        "redis_cpu_ms_per_report": round((cpu_after[1] - cpu_before[1]) * 1000 / max(reports, 1), 3),
        "load_avg_1min_at_end": round(load_1min, 2),
        "ack_ms_p50": round(percentile(stats.latencies_ms, 0.50), 2),
        "ack_ms_p99": round(percentile(stats.latencies_ms, 0.99), 2),
        "ack_ms_max": round(max(stats.latencies_ms, default=float("nan")), 2),
        "ack_ms_p99_by_10s": timeline(stats, started),
        "listening_sessions": total_sessions,
        "bytes_per_listening_session": round(data_bytes / max(sample_sessions, 1)),
        "log_bytes_per_history": round(log_bytes / max(len(sample), 1)),
        "used_memory_growth_per_listener": round((memory_after - memory_before) / args.n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="listeners (default 1000)")
    parser.add_argument("--interval-s", type=float, default=5.0, help="playing report interval (default 5)")
    parser.add_argument("--throttle-s", type=float, default=5.0, help="server throttle (default 5)")
    parser.add_argument("--duration-s", type=float, default=60.0, help="simulated run length (default 60)")
    parser.add_argument("--silence-s", type=float, default=60.0, help="server silence before a sweep (default 60)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="run K times faster (default 1)")
    parser.add_argument("--concurrency", type=int, default=50, help="handshakes in flight while connecting")
    parser.add_argument("--quick", action="store_true", help="200 listeners for 20 s")
    args = parser.parse_args()
    if args.quick:
        args.n, args.duration_s = 200, 20.0
    if not (1 <= args.n <= 5000 and 0 < args.duration_s / args.time_scale <= DEADLINE_S and args.interval_s > 0):
        parser.error("bounded runs only: 1..5000 listeners, at most 600 s")
    result = asyncio.run(run(args))
    print_json(result)
    scale = args.time_scale
    print(
        f"\n{result['listeners']} listeners, playing every {args.interval_s} s (throttle {args.throttle_s} s)"
        f"{f', time x{scale:g}' if scale != 1 else ''}, {result['elapsed_s']} s:\n"
        f"  reports/s {result['reports_per_s']}  ->  Redis write commands/s {result['redis_write_commands_per_s']}"
        f" ({result['redis_write_commands_per_report']} per report; per simulated s:"
        f" {result['redis_write_commands_per_s'] / scale:.1f})\n"
        f"  ack p50 {result['ack_ms_p50']} ms, p99 {result['ack_ms_p99']} ms, max {result['ack_ms_max']} ms\n"
        f"  ack p99 by 10 s window: {result['ack_ms_p99_by_10s']}\n"
        f"  CPU per report: server {result['server_cpu_ms_per_report']} ms,"
        f" redis {result['redis_cpu_ms_per_report']} ms"
        f" (machine load {result['load_avg_1min_at_end']} at the end)\n"
        f"  actions {result['actions']}, errors {result['errors'] or 'none'}\n"
        f"  Redis memory: {result['bytes_per_listening_session']} B per listening session (records + indexes),"
        f" {result['log_bytes_per_history']} B of event log per history,"
        f" {result['used_memory_growth_per_listener']} B used_memory growth per listener (with its connection)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
