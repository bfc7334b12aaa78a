"""What one committed voice status event costs Redis: CPU and commands per ``set_status`` call.

    .venv/bin/python bench/event_cost.py                 # 1,000 sessions, 20,000 changes
    .venv/bin/python bench/event_cost.py --sessions 100 --events 50000

The server is left out: a private redis-server (pinned to the load core, loopback, free port)
runs the real script (storage/voice/lua/set_status.lua with the event prologue) through the
real repository (``VoiceSessions.set_status``), --concurrency calls in flight, each session's
channel subscribed by one connection as a node's bus would be (so PUBLISH does its delivery
work). Prints Redis' CPU per committed event (from /proc, over the calls only), the commands
the script ran per event and the script's own time per call (INFO commandstats deltas:
commands inside a script are counted there too). Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common.figures import print_json
from common.servers import start_redis
from procstat import cpu_sample
from redis.asyncio import BlockingConnectionPool, Redis

from storage.clock import Clock
from storage.events import EventLog
from storage.keys import Keys
from storage.lean_redis import LeanRedis
from storage.scripts import Scripts
from storage.sessions import SessionDirectory
from storage.store import Store
from storage.voice.repository import Performer, VoiceSessions

STATUSES = ("recording", "paused")  # each may follow the other; "recording" may follow "ready"
TIME_LIMIT_S = 120.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=1000, help="voice sessions (default 1000)")
    p.add_argument("--events", type=int, default=20000, help="status changes in total (default 20000)")
    p.add_argument("--concurrency", type=int, default=64, help="calls in flight (default 64)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


async def commandstats(redis: Redis) -> dict[str, dict[str, float]]:
    """INFO commandstats: per command, its calls and usec."""
    info = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): {"calls": v["calls"], "usec": v["usec"]} for name, v in info.items()}


async def drain_messages(pubsub: Any, stop: asyncio.Event) -> int:
    """Read (and drop) what the subscribed channels receive until ``stop``; the count."""
    received = 0
    while not stop.is_set():
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        received += message is not None
    return received


async def measure(args: argparse.Namespace, redis_url: str, redis_pid: int) -> dict[str, Any]:
    """Create the sessions, subscribe their channels, run the calls; the figures."""
    # as the server builds it: script calls share one pipelined connection (storage/lean_redis.py)
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=args.concurrency + 8, decode_responses=True)
    redis: Redis = LeanRedis.from_pool(pool)
    keys, clock = Keys("sh"), Clock()
    log = EventLog(redis=redis, keys=keys, clock=clock, maxlen=1000)
    sessions = SessionDirectory(redis=redis, keys=keys, clock=clock, orphan_days=30)
    store = Store(redis=redis, keys=keys, scripts=Scripts.load(redis), log=log, clock=clock, sessions=sessions)
    voice = VoiceSessions(store)
    owner = Performer(user_id="bench", read_scope="own", may_update=True)
    ids = [(await voice.create(owner_id="bench", telegram_user_id="", name=f"s{i}")).id for i in range(args.sessions)]
    pubsub = redis.pubsub()
    await pubsub.subscribe(*(keys.channel(i) for i in ids))
    stop = asyncio.Event()
    reader = asyncio.create_task(drain_messages(pubsub, stop))
    changes = [0] * len(ids)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(args.events):
        queue.put_nowait(n % len(ids))
    # the first change of each session goes first and alone: "paused" may not follow "ready"
    await asyncio.gather(*(voice.set_status(i, STATUSES[0], owner) for i in ids))
    changes = [1] * len(ids)
    deadline = time.monotonic() + TIME_LIMIT_S
    committed = 0
    locks = [asyncio.Lock() for _ in ids]  # one change of a session at a time: the statuses alternate

    async def worker() -> None:
        nonlocal committed
        while not queue.empty() and time.monotonic() < deadline:
            index = queue.get_nowait()
            async with locks[index]:
                status = STATUSES[changes[index] % 2]
                changes[index] += 1
                change = await voice.set_status(ids[index], status, owner)
            committed += change.offset > 0

    before_stats = await commandstats(redis)
    before_cpu = cpu_sample(redis_pid, time.monotonic())
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    after_cpu = cpu_sample(redis_pid, time.monotonic())
    after_stats = await commandstats(redis)
    stop.set()
    received = await reader
    await pubsub.aclose()
    await redis.aclose()
    per_event = {}
    for name, stats in after_stats.items():
        calls = stats["calls"] - before_stats.get(name, {}).get("calls", 0)
        if calls and name not in ("info",):
            usec = stats["usec"] - before_stats.get(name, {}).get("usec", 0)
            per_event[name] = {"calls": round(calls / max(1, committed), 3), "usec_per_call": round(usec / calls, 2)}
    cpu_s = after_cpu.cpu_s - before_cpu.cpu_s
    return {
        "sessions": args.sessions,
        "committed": committed,
        "events_per_s": round(committed / elapsed, 1),
        "redis_cpu_us_per_event": round(1e6 * cpu_s / max(1, committed), 1),
        "commands_in_script_per_event": round(
            sum(v["calls"] for k, v in per_event.items() if k not in ("evalsha", "eval")), 2
        ),
        "per_event": per_event,
        "published_received": received,
    }


def main(argv: list[str] | None = None) -> int:
    """Start redis-server, measure, print; 0 when every call committed."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sessionhub-eventcost-") as tmp:
        redis, url = start_redis(Path(tmp))
        try:
            figures = asyncio.run(measure(args, url, redis.pid))
        finally:
            redis.stop()
    if args.json:
        print_json(figures)
    else:
        print(
            f"{figures['committed']} committed status changes on {figures['sessions']} sessions, "
            f"{figures['events_per_s']:.0f}/s: Redis CPU {figures['redis_cpu_us_per_event']} µs per event, "
            f"{figures['commands_in_script_per_event']} commands inside the script per event"
        )
        for name, v in sorted(figures["per_event"].items(), key=lambda kv: -kv[1]["calls"]):
            print(f"  {name:10} {v['calls']:6.2f} per event  {v['usec_per_call']:7.2f} µs per call")
    return 0 if figures["committed"] == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
